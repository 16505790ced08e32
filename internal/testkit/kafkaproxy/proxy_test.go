package kafkaproxy

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

func TestParseRequest(t *testing.T) {
	clientID := "sluice-test"
	for _, tc := range []struct {
		req      kmsg.Request
		version  int16
		flexible bool
	}{
		{&kmsg.EndTxnRequest{TransactionalID: "app-stage-i1", ProducerID: 42, ProducerEpoch: 7, Commit: true}, 1, false},
		{&kmsg.EndTxnRequest{TransactionalID: "app-stage-i1", ProducerID: 42, ProducerEpoch: 7, Commit: false}, 4, true},
		{&kmsg.MetadataRequest{Topics: []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("t")}}}, 12, true},
		{&kmsg.ProduceRequest{Acks: -1, TimeoutMillis: 1000, TransactionID: kmsg.StringPtr("x")}, 7, false},
	} {
		tc.req.SetVersion(tc.version)
		if tc.req.IsFlexible() != tc.flexible {
			t.Fatalf("%T v%d flexible=%v, test expects %v", tc.req, tc.version, tc.req.IsFlexible(), tc.flexible)
		}
		f := kmsg.NewRequestFormatter(kmsg.FormatterClientID(clientID))
		wire := f.AppendRequest(nil, tc.req, 1234)
		r, err := ParseRequest(wire[4:])
		if err != nil {
			t.Fatalf("%T v%d: %v", tc.req, tc.version, err)
		}
		if r.Key != tc.req.Key() || r.Version != tc.version || r.CorrelationID != 1234 || r.ClientID == nil || *r.ClientID != clientID {
			t.Errorf("%T v%d: parsed key %d version %d correlation %d client %v", tc.req, tc.version, r.Key, r.Version, r.CorrelationID, r.ClientID)
		}
		if want := tc.req.AppendTo(nil); !bytes.Equal(r.Body, want) {
			t.Errorf("%T v%d: body %x, want %x", tc.req, tc.version, r.Body, want)
		}
		dec, err := r.Decode()
		if err != nil {
			t.Fatalf("%T v%d: decode: %v", tc.req, tc.version, err)
		}
		if !bytes.Equal(dec.AppendTo(nil), tc.req.AppendTo(nil)) {
			t.Errorf("%T v%d: decoded request differs", tc.req, tc.version)
		}
	}
	if _, err := ParseRequest([]byte{0, 26}); err == nil {
		t.Error("a 2-byte frame parsed")
	}
	if _, err := (&Request{Key: 9999}).Decode(); err == nil {
		t.Error("an unknown api key decoded")
	}
}

func TestRewriteResponse(t *testing.T) {
	mapAddr := func(host string, port int32) (string, int32, error) {
		if host == "10.0.0.1" && port == 9092 {
			return "127.0.0.1", 40001, nil
		}
		return "", 0, errors.New("unexpected " + host)
	}
	for _, v := range []int16{0, 1, 7, 9, 12} {
		resp := &kmsg.MetadataResponse{Version: v, Brokers: []kmsg.MetadataResponseBroker{{NodeID: 1, Host: "10.0.0.1", Port: 9092}}}
		if v >= 1 {
			resp.ControllerID = 1
		}
		resp.Topics = []kmsg.MetadataResponseTopic{{Topic: kmsg.StringPtr("t"), Partitions: []kmsg.MetadataResponseTopicPartition{{Partition: 0, Leader: 1}}}}
		frame := appendResponse(resp, 77)
		out, err := RewriteResponse(3, v, frame, mapAddr)
		if err != nil {
			t.Fatalf("metadata v%d: %v", v, err)
		}
		got := &kmsg.MetadataResponse{Version: v}
		hdr := 4
		if got.IsFlexible() {
			hdr++ // an empty tag section
		}
		if !bytes.Equal(out[:4], frame[:4]) {
			t.Errorf("metadata v%d: correlation id changed", v)
		}
		if err := got.ReadFrom(out[hdr:]); err != nil {
			t.Fatalf("metadata v%d: decoding the rewritten response: %v", v, err)
		}
		if b := got.Brokers[0]; b.Host != "127.0.0.1" || b.Port != 40001 || b.NodeID != 1 {
			t.Errorf("metadata v%d: broker %+v, want node 1 at 127.0.0.1:40001", v, b)
		}
		if len(got.Topics) != 1 || *got.Topics[0].Topic != "t" {
			t.Errorf("metadata v%d: topics %+v lost in the rewrite", v, got.Topics)
		}
	}
	for _, v := range []int16{2, 4} {
		resp := &kmsg.FindCoordinatorResponse{Version: v}
		if v < 4 {
			resp.NodeID, resp.Host, resp.Port = 1, "10.0.0.1", 9092
		} else {
			resp.Coordinators = []kmsg.FindCoordinatorResponseCoordinator{{Key: "g", NodeID: 1, Host: "10.0.0.1", Port: 9092}}
		}
		out, err := RewriteResponse(10, v, appendResponse(resp, 5), mapAddr)
		if err != nil {
			t.Fatalf("find coordinator v%d: %v", v, err)
		}
		got := &kmsg.FindCoordinatorResponse{Version: v}
		hdr := 4
		if got.IsFlexible() {
			hdr++
		}
		if err := got.ReadFrom(out[hdr:]); err != nil {
			t.Fatal(err)
		}
		host, port := got.Host, got.Port
		if v >= 4 {
			host, port = got.Coordinators[0].Host, got.Coordinators[0].Port
		}
		if host != "127.0.0.1" || port != 40001 {
			t.Errorf("find coordinator v%d: %s:%d", v, host, port)
		}
	}
	// Other responses pass unchanged.
	frame := appendResponse(&kmsg.EndTxnResponse{Version: 3}, 9)
	if out, err := RewriteResponse(26, 3, frame, mapAddr); err != nil || !bytes.Equal(out, frame) {
		t.Errorf("EndTxn response changed: %x -> %x (%v)", frame, out, err)
	}
}

// appendResponse encodes a response frame without its size prefix.
func appendResponse(r kmsg.Response, corr int32) []byte {
	b := []byte{byte(corr >> 24), byte(corr >> 16), byte(corr >> 8), byte(corr)}
	if r.IsFlexible() && r.Key() != 18 {
		b = append(b, 0)
	}
	return r.AppendTo(b)
}

func newProxy(t *testing.T, brokers []string, opts ...Opt) *Proxy {
	t.Helper()
	p, err := New(brokers[0], append([]Opt{Logf(t.Logf)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestIntegrationProxyForwards: a client seeded with the proxy produces and
// consumes through it, and learns the proxy's address, not the broker's,
// from metadata: every request goes through the proxy.
func TestIntegrationProxyForwards(t *testing.T) {
	brokers := testbroker.Brokers(t)
	topic := testbroker.Unique(t, "proxy")
	testbroker.CreateTopic(t, brokers, topic, 2, nil)
	p := newProxy(t, brokers)

	cl := testbroker.NewClient(t, []string{p.Addr()}, kgo.DefaultProduceTopic(topic), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 20 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for n < 20 && ctx.Err() == nil {
		n += cl.PollFetches(ctx).NumRecords()
	}
	if n != 20 {
		t.Fatalf("consumed %d of 20 records through the proxy", n)
	}
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, proxyPort, _ := net.SplitHostPort(p.Addr())
	for _, b := range md.Brokers {
		if b.Host != "127.0.0.1" || strconv.Itoa(int(b.Port)) != proxyPort {
			t.Errorf("metadata through the proxy advertises %s:%d, want the proxy %s", b.Host, b.Port, p.Addr())
		}
	}
	seen := map[int16]int{}
	for _, c := range p.Conns() {
		if c.Upstream != brokers[0] {
			t.Errorf("a connection forwards to %s, want %s", c.Upstream, brokers[0])
		}
		for k, n := range c.Seen {
			seen[k] += n
		}
	}
	if seen[0] == 0 || seen[1] == 0 {
		t.Errorf("the proxy saw %d produce and %d fetch requests; the client went around it", seen[0], seen[1])
	}
	if s := p.Stats(); s.Rewritten == 0 || s.RewriteErrors != 0 {
		t.Errorf("stats %+v: want rewritten metadata and no rewrite error", s)
	}
}

// TestCutBeforeResponse: EndTxn is forwarded, the broker commits, and the
// client gets a broken connection instead of the answer.
func TestCutBeforeResponse(t *testing.T) {
	brokers := testbroker.Brokers(t)
	topic := testbroker.Unique(t, "proxy")
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	var endTxns atomic.Int32
	p := newProxy(t, brokers, OnRequest(func(r *Request) Action {
		if r.Key != 26 {
			return Forward
		}
		req, err := r.Decode()
		if err != nil {
			t.Error(err)
			return Forward
		}
		if !req.(*kmsg.EndTxnRequest).Commit {
			t.Error("EndTxn with commit=false")
		}
		endTxns.Add(1)
		return CutBeforeResponse
	}))
	cl := testbroker.NewClient(t, []string{p.Addr()}, kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(testbroker.Unique(t, "txn")), kgo.RequestRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("committed")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err == nil {
		t.Fatal("EndTransaction succeeded although its response was cut")
	}
	if n := endTxns.Load(); n != 1 {
		t.Fatalf("%d EndTxn requests, want 1 (no retries)", n)
	}
	if s := p.Stats(); s.CutsBeforeResponse != 1 {
		t.Errorf("stats %+v: want one cut before a response", s)
	}
	// The broker got the request and committed.
	recs := testbroker.ReadCommitted(t, brokers, topic)
	if len(recs) != 1 || string(recs[0].Value) != "committed" {
		t.Fatalf("read_committed sees %d records, want the one committed record", len(recs))
	}
}

// TestCutBeforeRequest: the request never reaches the broker.
func TestCutBeforeRequest(t *testing.T) {
	c := testbroker.NewKfake(t)
	var brokerSaw atomic.Int32
	c.ControlKey(int16(kmsg.Heartbeat), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		brokerSaw.Add(1)
		return nil, nil, false
	})
	brokers := c.ListenAddrs()
	var cut atomic.Bool
	p := newProxy(t, brokers, OnRequest(func(r *Request) Action {
		if r.Key == int16(kmsg.Heartbeat) && cut.CompareAndSwap(false, true) {
			return CutBeforeRequest
		}
		return Forward
	}))
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Group = "g"
	req.SetVersion(3)
	if _, err := conn.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 1)); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := readFrame(conn); err == nil {
		t.Fatal("got a response to a request the proxy should have cut")
	}
	// A second connection's heartbeat is forwarded and answered.
	conn2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	if _, err := conn2.Write(kmsg.NewRequestFormatter().AppendRequest(nil, req, 2)); err != nil {
		t.Fatal(err)
	}
	conn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	frame, err := readFrame(conn2)
	if err != nil {
		t.Fatal(err)
	}
	if corr := int32(frame[0])<<24 | int32(frame[1])<<16 | int32(frame[2])<<8 | int32(frame[3]); corr != 2 {
		t.Errorf("response correlation id %d, want 2", corr)
	}
	if n := brokerSaw.Load(); n != 1 {
		t.Errorf("the broker saw %d heartbeats, want 1 (the cut one never arrived)", n)
	}
}

// TestCloseRandom: connections closed at random while a client consumes; the
// client reconnects and reads everything.
func TestCloseRandom(t *testing.T) {
	brokers := testbroker.Brokers(t)
	topic := testbroker.Unique(t, "proxy")
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	p := newProxy(t, brokers)
	prod := testbroker.NewClient(t, []string{p.Addr()}, kgo.DefaultProduceTopic(topic))
	cons := testbroker.NewClient(t, []string{p.Addr()}, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rng := rand.New(rand.NewPCG(1, 2))
	closed := 0
	got := 0
	for i := range 30 {
		if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		if _, ok := p.CloseRandom(rng, nil); ok {
			closed++
		}
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		got += cons.PollFetches(pctx).NumRecords()
		pcancel()
	}
	for got < 30 && ctx.Err() == nil {
		got += cons.PollFetches(ctx).NumRecords()
	}
	if got != 30 {
		t.Fatalf("consumed %d of 30 records", got)
	}
	if closed == 0 || p.Stats().Closed != int64(closed) {
		t.Errorf("closed %d connections, stats %+v", closed, p.Stats())
	}
	t.Logf("%d connections closed, %d accepted", closed, p.Stats().Accepted)
}

// TestProxyAdvertisesEveryBroker: with a cluster of three kfake brokers, the
// proxy starts a listener per broker on first sight, and a client reaches
// them all through it.
func TestProxyAdvertisesEveryBroker(t *testing.T) {
	c := testbroker.NewKfake(t, kfake.NumBrokers(3))
	brokers := c.ListenAddrs()
	topic := testbroker.Unique(t, "proxy")
	testbroker.CreateTopic(t, brokers, topic, 6, nil)
	for i := range int32(6) { // leaders on every broker
		if err := c.MoveTopicPartition(topic, i, i%3); err != nil {
			t.Fatal(err)
		}
	}
	p := newProxy(t, brokers[:1])
	cl := testbroker.NewClient(t, []string{p.Addr()}, kgo.DefaultProduceTopic(topic))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 60 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	upstreams := map[string]bool{}
	for _, ci := range p.Conns() {
		upstreams[ci.Upstream] = true
	}
	// Every broker that leads a partition was produced to through the
	// proxy.
	adm := testbroker.Admin(t, brokers)
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, pd := range md.Topics[topic].Partitions {
		b := md.Brokers[slices.IndexFunc(md.Brokers, func(b kadm.BrokerDetail) bool { return b.NodeID == pd.Leader })]
		if addr := net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))); !upstreams[addr] {
			t.Errorf("partition %d: no proxied connection to its leader %s (have %v)", pd.Partition, addr, upstreams)
		}
	}
	if len(upstreams) != 3 {
		t.Errorf("connections to %d brokers, want 3", len(upstreams))
	}
}
