package kafkaproxy

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Action is what the proxy does with one request.
type Action int

const (
	// Forward sends the request to the broker and its response back.
	Forward Action = iota
	// CutBeforeRequest closes the connection (both sides) without
	// forwarding the request: the broker never sees it.
	CutBeforeRequest
	// CutBeforeResponse forwards the request, waits for the broker's
	// response and closes the connection (both sides) instead of
	// delivering it: the broker handled the request, the client gets a
	// broken connection.
	CutBeforeResponse
)

func (a Action) String() string {
	switch a {
	case Forward:
		return "forward"
	case CutBeforeRequest:
		return "cut-before-request"
	case CutBeforeResponse:
		return "cut-before-response"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Request is one request frame as the proxy read it.
type Request struct {
	Key           int16
	Version       int16
	CorrelationID int32
	ClientID      *string
	// Body is the request body (after the header); valid until the hook
	// returns.
	Body []byte
	// Conn is the connection that carried the request.
	Conn uint64
	// Upstream is the broker address the connection forwards to.
	Upstream string
}

// Decode parses Body as the request kmsg knows for Key at Version.
func (r *Request) Decode() (kmsg.Request, error) {
	req := kmsg.RequestForKey(r.Key)
	if req == nil {
		return nil, fmt.Errorf("kafkaproxy: unknown api key %d", r.Key)
	}
	req.SetVersion(r.Version)
	if err := req.ReadFrom(r.Body); err != nil {
		return nil, fmt.Errorf("kafkaproxy: decoding %s v%d: %w", kmsg.NameForKey(r.Key), r.Version, err)
	}
	return req, nil
}

// ParseRequest parses a request frame without its 4-byte size prefix: the
// header (api key, api version, correlation id, client id, and for flexible
// versions the header's tagged fields) and the body that follows. The
// returned Body aliases frame.
func ParseRequest(frame []byte) (Request, error) {
	if len(frame) < 8 {
		return Request{}, fmt.Errorf("kafkaproxy: request frame of %d bytes, shorter than a header", len(frame))
	}
	b := kbin.Reader{Src: frame}
	r := Request{Key: b.Int16(), Version: b.Int16(), CorrelationID: b.Int32()}
	if r.Key == 7 && r.Version == 0 { // ControlledShutdown v0 has no client id
		r.Body = b.Src
		return r, nil
	}
	r.ClientID = b.NullableString()
	if kr := kmsg.RequestForKey(r.Key); kr != nil {
		kr.SetVersion(r.Version)
		if kr.IsFlexible() {
			skipTags(&b)
		}
	}
	if !b.Ok() {
		return Request{}, fmt.Errorf("kafkaproxy: truncated header of %s v%d", kmsg.NameForKey(r.Key), r.Version)
	}
	r.Body = b.Src
	return r, nil
}

func skipTags(b *kbin.Reader) {
	for n := b.Uvarint(); n > 0 && b.Ok(); n-- {
		b.Uvarint()
		b.Span(int(b.Uvarint()))
	}
}

// ConnInfo describes one proxied connection.
type ConnInfo struct {
	ID       uint64
	Upstream string
	// Seen counts the requests the connection carried, by api key.
	Seen map[int16]int
	// InFlight lists the api keys of the requests forwarded and not yet
	// answered, oldest first.
	InFlight []int16
}

// Stats counts what the proxy did.
type Stats struct {
	Accepted           int64 // connections accepted
	Requests           int64 // request frames read
	CutsBeforeRequest  int64 // connections closed instead of forwarding a request
	CutsBeforeResponse int64 // connections closed instead of delivering a response
	Closed             int64 // connections closed by CloseRandom or CloseAll
	Rewritten          int64 // responses whose broker addresses were rewritten
	RewriteErrors      int64 // responses that could not be rewritten (forwarded as they were)
}

// Proxy forwards Kafka connections. Create it with New; Close it when done.
type Proxy struct {
	addr string // the listener for the first upstream

	hook atomic.Pointer[func(*Request) Action]
	logf func(format string, args ...any)

	mu struct {
		sync.Mutex
		closed    bool
		listeners map[string]net.Listener // upstream address -> local listener
		local     map[string]string       // upstream address -> local address
		conns     map[uint64]*conn
		nextID    uint64
	}
	wg sync.WaitGroup

	accepted, requests, cutsReq, cutsResp, closedN, rewritten, rewriteErrs atomic.Int64
}

// Opt configures a Proxy.
type Opt func(*Proxy)

// Logf sets a logger for connection events (off by default).
func Logf(fn func(format string, args ...any)) Opt { return func(p *Proxy) { p.logf = fn } }

// OnRequest sets the hook that decides each request's fate (default: every
// request is forwarded). It runs on the connection's reading goroutine,
// before the request is forwarded; it may be called concurrently for
// different connections.
func OnRequest(fn func(*Request) Action) Opt {
	return func(p *Proxy) { p.hook.Store(&fn) }
}

// New starts a proxy for the broker at upstream ("host:port") on a loopback
// port. Clients seeded with Addr reach every broker of the cluster through
// the proxy (see the package documentation).
func New(upstream string, opts ...Opt) (*Proxy, error) {
	p := &Proxy{}
	p.mu.listeners = map[string]net.Listener{}
	p.mu.local = map[string]string{}
	p.mu.conns = map[uint64]*conn{}
	for _, o := range opts {
		o(p)
	}
	addr, err := p.listenFor(upstream)
	if err != nil {
		return nil, err
	}
	p.addr = addr
	return p, nil
}

// Addr returns the local address to seed clients with.
func (p *Proxy) Addr() string { return p.addr }

// SetOnRequest replaces the request hook; nil forwards everything.
func (p *Proxy) SetOnRequest(fn func(*Request) Action) {
	if fn == nil {
		p.hook.Store(nil)
		return
	}
	p.hook.Store(&fn)
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Accepted:           p.accepted.Load(),
		Requests:           p.requests.Load(),
		CutsBeforeRequest:  p.cutsReq.Load(),
		CutsBeforeResponse: p.cutsResp.Load(),
		Closed:             p.closedN.Load(),
		Rewritten:          p.rewritten.Load(),
		RewriteErrors:      p.rewriteErrs.Load(),
	}
}

// listenFor returns the local address forwarding to upstream, starting a
// listener on first use.
func (p *Proxy) listenFor(upstream string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.mu.local[upstream]; ok {
		return a, nil
	}
	if p.mu.closed {
		return "", errors.New("kafkaproxy: closed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("kafkaproxy: listening for %s: %w", upstream, err)
	}
	p.mu.listeners[upstream] = ln
	p.mu.local[upstream] = ln.Addr().String()
	p.wg.Add(1)
	go p.accept(ln, upstream)
	return ln.Addr().String(), nil
}

func (p *Proxy) accept(ln net.Listener, upstream string) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c, upstream)
	}
}

func (p *Proxy) serve(client net.Conn, upstream string) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", upstream, 10*time.Second)
	if err != nil {
		p.log("dialing %s: %v", upstream, err)
		client.Close()
		return
	}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.mu.nextID++
	c := &conn{p: p, id: p.mu.nextID, upstream: upstream, client: client, server: server, seen: map[int16]int{}}
	p.mu.conns[c.id] = c
	p.mu.Unlock()
	p.accepted.Add(1)

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.responses()
	}()
	c.requests()
	<-done
	p.mu.Lock()
	delete(p.mu.conns, c.id)
	p.mu.Unlock()
}

func (p *Proxy) log(format string, args ...any) {
	if p.logf != nil {
		p.logf("kafkaproxy: "+format, args...)
	}
}

// Conns describes the open connections.
func (p *Proxy) Conns() []ConnInfo {
	p.mu.Lock()
	cs := make([]*conn, 0, len(p.mu.conns))
	for _, c := range p.mu.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	out := make([]ConnInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.info())
	}
	slices.SortFunc(out, func(a, b ConnInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// CloseRandom closes one connection picked with rng among those for which
// match returns true (nil: any), and describes it as it was when closed. It
// reports false when no connection matched, or when the one picked was
// already closing by itself (its peer hung up in the meantime).
func (p *Proxy) CloseRandom(rng *rand.Rand, match func(ConnInfo) bool) (ConnInfo, bool) {
	var cands []ConnInfo
	for _, ci := range p.Conns() {
		if match == nil || match(ci) {
			cands = append(cands, ci)
		}
	}
	if len(cands) == 0 {
		return ConnInfo{}, false
	}
	pick := cands[rng.IntN(len(cands))]
	p.mu.Lock()
	c := p.mu.conns[pick.ID]
	p.mu.Unlock()
	if c == nil {
		return ConnInfo{}, false
	}
	info := c.info()
	if !c.close() {
		return ConnInfo{}, false
	}
	p.closedN.Add(1)
	return info, true
}

// CloseAll closes every open connection (the listeners stay open) and
// returns how many it closed.
func (p *Proxy) CloseAll() int {
	p.mu.Lock()
	cs := make([]*conn, 0, len(p.mu.conns))
	for _, c := range p.mu.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	n := 0
	for _, c := range cs {
		if c.close() {
			n++
		}
	}
	p.closedN.Add(int64(n))
	return n
}

// Close stops every listener and connection and waits for their goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	for _, ln := range p.mu.listeners {
		ln.Close()
	}
	cs := make([]*conn, 0, len(p.mu.conns))
	for _, c := range p.mu.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.close()
	}
	p.wg.Wait()
	return nil
}

// conn is one proxied connection: requests flows client -> broker,
// responses broker -> client. Each direction has one goroutine and one
// writer.
type conn struct {
	p              *Proxy
	id             uint64
	upstream       string
	client, server net.Conn
	closeOnce      sync.Once
	mu             sync.Mutex
	pending        []pending // forwarded, not yet answered, in order
	seen           map[int16]int
}

type pending struct {
	corr         int32
	key, version int16
	cut          bool
}

func (c *conn) info() ConnInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci := ConnInfo{ID: c.id, Upstream: c.upstream, Seen: make(map[int16]int, len(c.seen))}
	for k, n := range c.seen {
		ci.Seen[k] = n
	}
	for _, pr := range c.pending {
		ci.InFlight = append(ci.InFlight, pr.key)
	}
	return ci
}

// close closes both sides; it reports whether this call closed them.
func (c *conn) close() bool {
	closed := false
	c.closeOnce.Do(func() {
		closed = true
		c.client.Close()
		c.server.Close()
	})
	return closed
}

// readFrame reads one size-prefixed frame and returns it without the prefix.
func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := int32(size[0])<<24 | int32(size[1])<<16 | int32(size[2])<<8 | int32(size[3])
	if n < 0 || n > 256<<20 {
		return nil, fmt.Errorf("frame size %d out of range", n)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, err
	}
	return frame, nil
}

func writeFrame(w io.Writer, frame []byte) error {
	buf := make([]byte, 4, 4+len(frame))
	n := len(frame)
	buf[0], buf[1], buf[2], buf[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	_, err := w.Write(append(buf, frame...))
	return err
}

// requests forwards client -> broker.
func (c *conn) requests() {
	defer c.close()
	for {
		frame, err := readFrame(c.client)
		if err != nil {
			return
		}
		req, err := ParseRequest(frame)
		if err != nil {
			c.p.log("conn %d: %v", c.id, err)
			return
		}
		req.Conn, req.Upstream = c.id, c.upstream
		c.p.requests.Add(1)
		action := Forward
		if h := c.p.hook.Load(); h != nil {
			action = (*h)(&req)
		}
		c.mu.Lock()
		c.seen[req.Key]++
		if action == CutBeforeRequest {
			c.mu.Unlock()
			c.p.cutsReq.Add(1)
			c.p.log("conn %d: cut before forwarding %s v%d (correlation id %d)", c.id, kmsg.NameForKey(req.Key), req.Version, req.CorrelationID)
			c.close()
			return
		}
		c.pending = append(c.pending, pending{corr: req.CorrelationID, key: req.Key, version: req.Version, cut: action == CutBeforeResponse})
		c.mu.Unlock()
		if err := writeFrame(c.server, frame); err != nil {
			return
		}
	}
}

// responses forwards broker -> client, rewriting broker addresses.
func (c *conn) responses() {
	defer c.close()
	for {
		frame, err := readFrame(c.server)
		if err != nil {
			return
		}
		if len(frame) < 4 {
			return
		}
		corr := int32(frame[0])<<24 | int32(frame[1])<<16 | int32(frame[2])<<8 | int32(frame[3])
		c.mu.Lock()
		var pr pending
		found := false
		for i, q := range c.pending {
			if q.corr == corr {
				pr, found = q, true
				c.pending = c.pending[i+1:] // responses come in order
				break
			}
		}
		c.mu.Unlock()
		if !found {
			c.p.log("conn %d: response with unknown correlation id %d, forwarded as is", c.id, corr)
		}
		if found && pr.cut {
			c.p.cutsResp.Add(1)
			c.p.log("conn %d: cut before delivering the response to %s v%d (correlation id %d)", c.id, kmsg.NameForKey(pr.key), pr.version, corr)
			c.close()
			return
		}
		if found {
			switch pr.key {
			case 3, 10, 60: // Metadata, FindCoordinator, DescribeCluster
				out, err := c.p.rewrite(pr.key, pr.version, frame)
				if err != nil {
					c.p.rewriteErrs.Add(1)
					c.p.log("conn %d: %v; forwarded as is", c.id, err)
				} else {
					c.p.rewritten.Add(1)
					frame = out
				}
			}
		}
		if err := writeFrame(c.client, frame); err != nil {
			return
		}
	}
}

// rewrite replaces broker endpoints in a Metadata, FindCoordinator or
// DescribeCluster response frame (without its size prefix).
func (p *Proxy) rewrite(key, version int16, frame []byte) ([]byte, error) {
	return RewriteResponse(key, version, frame, func(host string, port int32) (string, int32, error) {
		if host == "" || port < 0 {
			return host, port, nil // no coordinator / no endpoint
		}
		local, err := p.listenFor(net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil {
			return "", 0, err
		}
		h, ps, _ := net.SplitHostPort(local)
		n, _ := strconv.Atoi(ps)
		return h, int32(n), nil
	})
}

// RewriteResponse decodes a Metadata (3), FindCoordinator (10) or
// DescribeCluster (60) response frame (without its size prefix) at version,
// replaces every broker endpoint with what mapAddr returns, and encodes it
// again with the same header. Other keys are returned unchanged.
func RewriteResponse(key, version int16, frame []byte, mapAddr func(host string, port int32) (string, int32, error)) ([]byte, error) {
	resp := kmsg.ResponseForKey(key)
	if resp == nil {
		return frame, nil
	}
	resp.SetVersion(version)
	b := kbin.Reader{Src: frame}
	b.Int32()                           // correlation id
	if resp.IsFlexible() && key != 18 { // ApiVersions answers with a v0 header
		skipTags(&b)
	}
	if !b.Ok() {
		return nil, fmt.Errorf("truncated header in %s v%d response", kmsg.NameForKey(key), version)
	}
	header := frame[:len(frame)-len(b.Src)]
	if err := resp.ReadFrom(b.Src); err != nil {
		return nil, fmt.Errorf("decoding %s v%d response: %w", kmsg.NameForKey(key), version, err)
	}
	var err error
	set := func(h *string, p *int32) {
		if err != nil {
			return
		}
		*h, *p, err = mapAddr(*h, *p)
	}
	switch r := resp.(type) {
	case *kmsg.MetadataResponse:
		for i := range r.Brokers {
			set(&r.Brokers[i].Host, &r.Brokers[i].Port)
		}
	case *kmsg.FindCoordinatorResponse:
		if version < 4 {
			set(&r.Host, &r.Port)
		}
		for i := range r.Coordinators {
			set(&r.Coordinators[i].Host, &r.Coordinators[i].Port)
		}
	case *kmsg.DescribeClusterResponse:
		for i := range r.Brokers {
			set(&r.Brokers[i].Host, &r.Brokers[i].Port)
		}
	default:
		return frame, nil
	}
	if err != nil {
		return nil, err
	}
	return resp.AppendTo(append([]byte(nil), header...)), nil
}
