package processor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/kafkaproxy"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// The membership simulation's harness (membership_sim_test.go has the
// schedules and the test, membership_check_test.go the checks). One kfake cluster per schedule, with two brokers:
// the application's group coordinators on one, its transaction coordinators
// on the other, so that an instance's group traffic and transaction traffic
// travel on different connections (as on a real cluster, where they are
// usually different brokers) and the network between an instance and the
// group coordinator can heal later than the rest.
//
// Every instance (incarnation of a processor) talks to the cluster through
// its own kafkaproxy, with a netGate deciding per request:
//   - kill: every request is cut, for good; then Run's context is cancelled.
//     The processor's shutdown (End, LeaveGroup) cannot reach the broker, so
//     the broker sees exactly what it sees of a kill -9: a member that stops
//     heartbeating and a transaction left open. This needs no hook in the
//     processor.
//   - pause: requests are held (not forwarded) and the instance's user code
//     blocks (loopGate: the topology's functions wait while the instance is
//     frozen), so that the stage loop and the heartbeats stop together, as
//     in a process stopped by SIGSTOP or a long GC pause. The held requests
//     are forwarded when the pause ends, as if sent then. Pauses stay below
//     franz-go's request timeout (10 s), so that the client does not see
//     its heartbeat fail during the pause (it would declare its partitions
//     lost on its own, which a stopped process cannot do). On resume,
//     requests to the group coordinator stay held a little longer (until
//     the instance's next EndTxn went through, or a random lag): the loop
//     runs on with its stale view of the assignment before the heartbeat
//     can tell it that it was removed, which is the zombie this is about.
//   - lost EndTxn response: the next EndTxn is forwarded and its connection
//     cut before the response returns.
//
// Broker-side faults use kfake's Fault (a ControlKey-like interceptor that
// filters on the transactional id): an EndTxn(commit) answered
// TRANSACTION_ABORTABLE (the client aborts instead), a TxnOffsetCommit
// rejected, a produce answered TRANSACTION_ABORTABLE.

// Stage names of the simulation topology.
const (
	simIngest = "ingest" // input (key id, value word) -> by word -> repartition
	simTally  = "shuffle"
)

// simTopics names the simulation's topics.
type simTopics struct {
	in, counts, released, batches, ticks, repartition string
}

// loopGate blocks the instance's user code while the instance is frozen.
type loopGate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	// armed: freeze at the next wall-clock timer that finds items to
	// release, calling trigger (without the lock) first.
	armed   bool
	trigger func()
	dead    bool // never block again
}

func newLoopGate() *loopGate {
	g := &loopGate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait blocks while the instance is frozen.
func (g *loopGate) wait() {
	g.mu.Lock()
	for g.frozen && !g.dead {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

// atRelease is called by the release timer when it found buffered items.
func (g *loopGate) atRelease() {
	g.mu.Lock()
	if g.armed && !g.dead {
		g.armed = false
		fn := g.trigger
		g.mu.Unlock()
		fn() // freezes
		g.mu.Lock()
	}
	for g.frozen && !g.dead {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

func (g *loopGate) set(frozen bool) {
	g.mu.Lock()
	g.frozen = frozen
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *loopGate) kill() {
	g.mu.Lock()
	g.dead, g.armed, g.frozen = true, false, false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// groupKeys are the requests the group coordinator answers.
var groupKeys = map[int16]bool{
	int16(kmsg.OffsetCommit): true, int16(kmsg.OffsetFetch): true, int16(kmsg.JoinGroup): true,
	int16(kmsg.Heartbeat): true, int16(kmsg.LeaveGroup): true, int16(kmsg.SyncGroup): true,
	int16(kmsg.TxnOffsetCommit): true, int16(kmsg.ConsumerGroupHeartbeat): true,
}

// netGate decides the fate of an instance's requests (see the top of the
// file).
type netGate struct {
	groupBroker string // upstream address of the group coordinator
	note        func(string)

	mu     sync.Mutex
	cond   *sync.Cond
	dead   bool
	frozen bool
	// holdGroup: requests to the group coordinator wait until then, or
	// until an EndTxn passed (then 300 ms more) when holdUntilEndTxn.
	holdGroup       time.Time
	holdUntilEndTxn bool
	cutEndTxnResp   int
	stats           struct{ frozenHeld, groupHeld, endTxnCut int }
}

func newNetGate(groupBroker string, note func(string)) *netGate {
	g := &netGate{groupBroker: groupBroker, note: note}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *netGate) broadcastAt(at time.Time) {
	time.AfterFunc(time.Until(at)+time.Millisecond, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
}

func (g *netGate) hook(r *kafkaproxy.Request) kafkaproxy.Action {
	g.mu.Lock()
	defer g.mu.Unlock()
	heldByFreeze, heldGroup := false, false
	for {
		switch {
		case g.dead:
			return kafkaproxy.CutBeforeRequest
		case g.frozen:
			if !heldByFreeze {
				heldByFreeze = true
				g.stats.frozenHeld++
			}
			g.cond.Wait()
			continue
		case r.Upstream == g.groupBroker && groupKeys[r.Key] && time.Now().Before(g.holdGroup):
			if !heldGroup {
				heldGroup = true
				g.stats.groupHeld++
			}
			g.cond.Wait()
			continue
		}
		break
	}
	if r.Key == int16(kmsg.EndTxn) {
		if g.holdUntilEndTxn && time.Now().Before(g.holdGroup) {
			g.holdUntilEndTxn = false
			g.holdGroup = time.Now().Add(300 * time.Millisecond)
			g.broadcastAt(g.holdGroup)
			g.note("EndTxn passed while the group coordinator is still unreachable")
		}
		if g.cutEndTxnResp > 0 {
			g.cutEndTxnResp--
			g.stats.endTxnCut++
			g.note("EndTxn forwarded, its response cut")
			return kafkaproxy.CutBeforeResponse
		}
	}
	return kafkaproxy.Forward
}

func (g *netGate) freeze() {
	g.mu.Lock()
	g.frozen = true
	g.mu.Unlock()
}

// resume ends a freeze; group coordinator requests stay held for lag, or
// until the next EndTxn when untilEndTxn (at most lag).
func (g *netGate) resume(lag time.Duration, untilEndTxn bool) {
	g.mu.Lock()
	g.frozen = false
	g.holdGroup = time.Now().Add(lag)
	g.holdUntilEndTxn = untilEndTxn
	g.broadcastAt(g.holdGroup)
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *netGate) kill() {
	g.mu.Lock()
	g.dead = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *netGate) loseNextEndTxnResponse() {
	g.mu.Lock()
	g.cutEndTxnResp++
	g.mu.Unlock()
}

// simFault is a broker fault armed by a schedule.
type simFault struct {
	what string
	h    *kfake.FaultHandle
}

// simInstance is one incarnation of a processor.
type simInstance struct {
	s      *sim
	name   string // "A", "B", ... with "#2" for a restart
	id     string // instance id (kept by restarts)
	dir    string
	commit time.Duration
	px     *kafkaproxy.Proxy
	net    *netGate
	gate   *loopGate
	p      *Processor
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's, once done is closed

	faulted atomic.Bool // a fault was aimed at it: restarts are explained
	killed  atomic.Bool
	paused  atomic.Bool // frozen now (or armed to freeze)
	stopped atomic.Bool // its Run was asked to stop cleanly
}

// sim is one schedule's world.
type sim struct {
	t           *testing.T
	seed        uint64
	c           *kfake.Cluster
	brokers     []string
	groupBroker string
	app         string
	tp          simTopics
	partitions  int32
	wall        time.Duration // release timer interval (wall clock)
	tick        time.Duration // stream-time timer interval
	start       time.Time
	base        time.Time // timestamp of id 0

	mu struct {
		sync.Mutex
		insts  []*simInstance
		events []string
		words  []string // word of id i
		faults []simFault
	}
	producing sync.WaitGroup
	stopProd  chan struct{}
	quiet     atomic.Bool // the test is ending: drop log lines
}

func newSim(t *testing.T, seed uint64, partitions int32) *sim {
	t.Helper()
	c := testbroker.NewKfake(t, kfake.NumBrokers(2))
	s := &sim{t: t, seed: seed, c: c, brokers: c.ListenAddrs(), partitions: partitions,
		wall: time.Second, tick: 2 * time.Second, start: time.Now(),
		base: time.Now().Truncate(time.Hour), stopProd: make(chan struct{})}
	// An application id whose two groups share a coordinator.
	for i := 0; ; i++ {
		app := fmt.Sprintf("sim%d-%d", seed%100000, i)
		g := c.CoordinatorFor(app + "-" + simIngest)
		if c.CoordinatorFor(app+"-"+simTally) == g {
			s.app = app
			break
		}
	}
	gnode := c.CoordinatorFor(s.app + "-" + simIngest)
	adm := testbroker.Admin(t, s.brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	md, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range md.Brokers {
		if b.NodeID == gnode {
			s.groupBroker = b.Host + ":" + strconv.Itoa(int(b.Port))
		}
	}
	if s.groupBroker == "" {
		t.Fatalf("no address for the group coordinator, node %d, in %+v", gnode, md.Brokers)
	}
	s.tp = simTopics{
		in: s.app + "-in", counts: s.app + "-counts", released: s.app + "-released",
		batches: s.app + "-batches", ticks: s.app + "-ticks",
		repartition: s.app + "-" + simTally + "-repartition",
	}
	for _, topic := range []string{s.tp.in, s.tp.counts, s.tp.released, s.tp.batches, s.tp.ticks} {
		testbroker.CreateTopic(t, s.brokers, topic, partitions, nil)
	}
	t.Cleanup(s.cleanup)
	return s
}

// cleanup kills what still runs, waits for every Run and closes the
// proxies; the instances' loggers go quiet before the test ends.
func (s *sim) cleanup() {
	if s.t.Failed() {
		s.quiet.Store(true) // the failure has been described
	}
	close(s.stopProd)
	s.producing.Wait()
	for _, in := range s.instances() {
		select {
		case <-in.done:
		default:
			in.kill()
		}
	}
	deadline := time.After(time.Minute)
	for _, in := range s.instances() {
		select {
		case <-in.done:
		case <-deadline:
			s.t.Errorf("%s: Run still running a minute after it was killed", in.name)
		}
	}
	for _, in := range s.instances() {
		in.px.Close()
	}
	s.quiet.Store(true)
}

// note adds a line to the schedule's event log.
func (s *sim) note(format string, args ...any) {
	line := fmt.Sprintf("%7.2fs ", time.Since(s.start).Seconds()) + fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.mu.events = append(s.mu.events, line)
	s.mu.Unlock()
}

func (s *sim) eventLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.mu.events, "\n")
}

// topology builds the simulation topology for one incarnation, whose user
// code waits on gate:
//
//	ingest:  in (id -> word) --Map: key by word--> repartition
//	shuffle: for each (word, id): counts[word]++ emitted to counts (1..n per
//	         word); id buffered in the store buffer. Every s.wall of wall
//	         clock, the buffered ids of the task are released as one batch
//	         "<partition>-<n>" (n counting the task's batches from 1, in the
//	         store batch-seq): each id to released (key id, value batch),
//	         the batch to batches (key batch, value its size). Every s.tick
//	         of stream time, a tick (key partition, value the stream time in
//	         ms) to ticks.
func (s *sim) topology(gate *loopGate) *stream.Topology {
	b := stream.NewBuilder()
	counts := stream.DeclareStore(b, "counts", codec.String{}, codec.Int64{})
	buffer := stream.DeclareStore(b, "buffer", codec.String{}, codec.String{})
	seq := stream.DeclareStore(b, "batch-seq", codec.String{}, codec.Int64{})
	countsOut := stream.DeclareOutput(b, s.tp.counts, codec.String{}, codec.Int64Text{})
	releasedOut := stream.DeclareOutput(b, s.tp.released, codec.String{}, codec.String{})
	batchesOut := stream.DeclareOutput(b, s.tp.batches, codec.String{}, codec.String{})
	ticksOut := stream.DeclareOutput(b, s.tp.ticks, codec.String{}, codec.String{})

	src := stream.Source(b, s.tp.in, codec.String{}, codec.String{}, stream.Named(simIngest))
	byWord := stream.Map(src, func(id, word string) (string, string) {
		gate.wait()
		return word, id
	}, stream.Named("by-word"))
	words := stream.Repartition(byWord, codec.String{}, codec.String{}, stream.Named(simTally))
	tally := func(h *stream.Handle, r stream.Record[string, string]) error {
		gate.wait()
		n, _, err := stream.Get(h, counts, r.Key)
		if err != nil {
			return err
		}
		n++
		if err := stream.Put(h, counts, r.Key, n); err != nil {
			return err
		}
		if err := stream.Emit(h, countsOut, r.Key, n); err != nil {
			return err
		}
		return stream.Put(h, buffer, r.Value, r.Key)
	}
	release := func(h *stream.Handle, _ time.Time) error {
		var ids []string
		if err := stream.Scan(h, buffer, func(id, _ string) error {
			ids = append(ids, id)
			return nil
		}); err != nil || len(ids) == 0 {
			return err
		}
		gate.atRelease() // a pause armed for this moment freezes here
		n, _, err := stream.Get(h, seq, "last")
		if err != nil {
			return err
		}
		n++
		batch := fmt.Sprintf("%d-%d", h.Partition(), n)
		for _, id := range ids {
			if err := stream.Emit(h, releasedOut, id, batch); err != nil {
				return err
			}
			if err := stream.Delete(h, buffer, id); err != nil {
				return err
			}
		}
		if err := stream.Put(h, seq, "last", n); err != nil {
			return err
		}
		return stream.Emit(h, batchesOut, batch, strconv.Itoa(len(ids)))
	}
	tick := func(h *stream.Handle, now time.Time) error {
		return stream.Emit(h, ticksOut, strconv.Itoa(int(h.Partition())), strconv.FormatInt(now.UnixMilli(), 10))
	}
	stream.Process(words, tally, stream.Uses(counts, buffer, seq),
		stream.EmitsTo(countsOut, releasedOut, batchesOut, ticksOut),
		stream.Every(s.wall, stream.WallClock, release),
		stream.Every(s.tick, stream.StreamTime, tick),
		stream.Named("tally"))
	topo, err := b.Build()
	if err != nil {
		s.t.Fatal(err)
	}
	return topo
}

// instanceID returns an instance id for name whose transactional ids are
// coordinated by the broker that is not the group coordinator.
func (s *sim) instanceID(name string) string {
	g := s.c.CoordinatorFor(s.app + "-" + simIngest)
	for i := 0; ; i++ {
		id := fmt.Sprintf("%s-%d", name, i)
		if s.c.CoordinatorFor(s.app+"-"+simIngest+"-"+id) != g && s.c.CoordinatorFor(s.app+"-"+simTally+"-"+id) != g {
			return id
		}
	}
}

// startInstance starts an incarnation. prev, if not nil, is the incarnation
// it restarts: same instance id, and its state directory if reuseDir (prev
// must have stopped then).
func (s *sim) startInstance(name string, commit time.Duration, prev *simInstance, reuseDir bool) *simInstance {
	s.t.Helper()
	in := &simInstance{s: s, name: name, commit: commit, done: make(chan struct{})}
	if prev != nil {
		in.id = prev.id
		if reuseDir {
			in.dir = prev.dir
		}
	} else {
		in.id = s.instanceID(name)
	}
	if in.dir == "" {
		in.dir = s.t.TempDir()
	}
	in.net = newNetGate(s.groupBroker, func(m string) { s.note("%s: %s", in.name, m) })
	in.gate = newLoopGate()
	px, err := kafkaproxy.New(s.brokers[0], kafkaproxy.OnRequest(in.net.hook))
	if err != nil {
		s.t.Fatal(err)
	}
	in.px = px
	opts := testOpts(s.t, []string{px.Addr()}, s.app)
	opts = append(opts, StateDir(in.dir), InstanceID(in.id), CommitInterval(commit), PurgeInterval(0),
		Logger(s.logger(in.name)))
	p, err := New(s.topology(in.gate), opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	in.p = p
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() {
		defer close(in.done)
		in.err = p.Run(ctx)
		s.note("%s: Run returned %v", in.name, in.err)
	}()
	s.mu.Lock()
	s.mu.insts = append(s.mu.insts, in)
	s.mu.Unlock()
	s.note("%s: started (instance id %s, commit interval %v, state %s)", in.name, in.id, commit, filepath.Base(in.dir))
	return in
}

func (s *sim) logger(name string) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SLUICE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(simWriter{s}, &slog.HandlerOptions{Level: level})).With("inst", name)
}

// simWriter is testWriter until the test ends (a killed instance may log
// while it winds down).
type simWriter struct{ s *sim }

func (w simWriter) Write(p []byte) (int, error) {
	if !w.s.quiet.Load() {
		w.s.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// leave stops an incarnation cleanly: Run's context is cancelled and Run
// ends its transaction and leaves the groups.
func (in *simInstance) leave() {
	in.stopped.Store(true)
	in.s.note("%s: leaving (context cancelled)", in.name)
	in.cancel()
}

// kill cuts the incarnation off the cluster for good, then cancels its
// context; nothing it does afterwards reaches the broker.
func (in *simInstance) kill() {
	in.killed.Store(true)
	in.net.kill()
	in.px.CloseAll()
	in.gate.kill()
	in.cancel()
	in.s.note("%s: killed (network cut for good)", in.name)
}

// pause freezes the incarnation for d: at once, or (atRelease) at its next
// wall-clock release that finds buffered items (at most 3 s later, then at
// once). On resume the group coordinator stays unreachable for lag more, or
// until the next EndTxn (untilEndTxn, at most lag).
func (in *simInstance) pause(d time.Duration, atRelease bool, lag time.Duration, untilEndTxn bool) {
	in.faulted.Store(true)
	in.paused.Store(true)
	var once sync.Once
	freeze := func(how string) {
		once.Do(func() {
			if in.killed.Load() {
				return
			}
			in.net.freeze()
			in.gate.set(true)
			in.s.note("%s: frozen %s for %v", in.name, how, d)
			time.AfterFunc(d, func() {
				if in.killed.Load() {
					return
				}
				in.net.resume(lag, untilEndTxn)
				in.gate.set(false)
				in.paused.Store(false)
				in.s.note("%s: resumed; group coordinator unreachable for %v more (until EndTxn: %v)", in.name, lag, untilEndTxn)
			})
		})
	}
	if !atRelease {
		freeze("now")
		return
	}
	in.gate.mu.Lock()
	in.gate.armed = true
	in.gate.trigger = func() { freeze("at a release with buffered items") }
	in.gate.mu.Unlock()
	in.s.note("%s: pause armed (at the next release with buffered items)", in.name)
	time.AfterFunc(3*time.Second, func() {
		in.gate.mu.Lock()
		armed := in.gate.armed
		in.gate.armed = false
		in.gate.mu.Unlock()
		if armed {
			freeze("now (no release came within 3s)")
		}
	})
}

// txnID returns the incarnation's transactional id in stage.
func (in *simInstance) txnID(stage string) string { return in.s.app + "-" + stage + "-" + in.id }

// brokerFault aims a kfake fault at the incarnation's transactional id in
// stage: "endtxn-abortable" (EndTxn(commit) answered
// TRANSACTION_ABORTABLE: the client aborts), "offsets-rebalance" and
// "offsets-generation" (TxnOffsetCommit rejected), "produce-abortable" (a
// produce to the counts topic answered TRANSACTION_ABORTABLE), or
// "lost-endtxn" (the proxy cuts the next EndTxn's response).
func (in *simInstance) brokerFault(kind, stage string) {
	in.faulted.Store(true)
	id := in.txnID(stage)
	var f kfake.Fault
	switch kind {
	case "lost-endtxn":
		in.net.loseNextEndTxnResponse()
		in.s.note("%s: the next EndTxn response will be lost", in.name)
		return
	case "endtxn-abortable":
		f = kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TxnID: id, Err: kerr.TransactionAbortable,
			When: func(r kmsg.Request) bool { return r.(*kmsg.EndTxnRequest).Commit }}
	case "offsets-rebalance":
		f = kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, TxnID: id, Err: kerr.RebalanceInProgress}
	case "offsets-generation":
		f = kfake.Fault{Keys: []kmsg.Key{kmsg.TxnOffsetCommit}, TxnID: id, Err: kerr.IllegalGeneration}
	case "produce-abortable":
		topic := in.s.tp.counts
		if stage == simIngest {
			topic = in.s.tp.repartition
		}
		f = kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: kerr.TransactionAbortable,
			When: func(r kmsg.Request) bool {
				tid := r.(*kmsg.ProduceRequest).TransactionID
				return tid != nil && *tid == id
			}}
	default:
		in.s.t.Fatalf("unknown fault %q", kind)
	}
	h := in.s.c.Fault(f)
	in.s.mu.Lock()
	in.s.mu.faults = append(in.s.mu.faults, simFault{in.name + " " + kind + " on " + stage, h})
	in.s.mu.Unlock()
	in.s.note("%s: broker fault %s armed on %s", in.name, kind, id)
}

// metrics returns the incarnation's metrics, by stage.
func (in *simInstance) metrics() map[string]StageMetrics { return in.p.Metrics().Stages }

// produce writes ids [from, from+n) to the input, id i with word
// word(i) and timestamp base + i*20ms, and remembers their words.
func (s *sim) produce(cl *kgo.Client, from, n int, word func(int) string) error {
	recs := make([]*kgo.Record, n)
	s.mu.Lock()
	for i := range n {
		id := from + i
		w := word(id)
		for len(s.mu.words) <= id {
			s.mu.words = append(s.mu.words, "")
		}
		s.mu.words[id] = w
		recs[i] = &kgo.Record{Key: []byte(simID(id)), Value: []byte(w), Timestamp: s.base.Add(time.Duration(id) * 20 * time.Millisecond)}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func simID(i int) string { return fmt.Sprintf("i%05d", i) }

func (s *sim) producer() *kgo.Client {
	return testbroker.NewClient(s.t, s.brokers, kgo.DefaultProduceTopic(s.tp.in))
}

// produceOver writes n ids from `from` spread over d, in a goroutine. A
// bursty producer writes only in the first second of every 2.5 s, so that
// wall-clock releases also happen in cycles that consumed nothing (the
// timer-only transactions of a zombie).
func (s *sim) produceOver(from, n int, d time.Duration, bursty bool, word func(int) string) {
	cl := s.producer()
	const step = 100 * time.Millisecond
	steps := max(1, int(d/step))
	on := func(i int) bool { return !bursty || i%25 < 10 }
	active := 0
	for i := range steps {
		if on(i) {
			active++
		}
	}
	s.producing.Add(1)
	go func() {
		defer s.producing.Done()
		done, seen := 0, 0
		for i := range steps {
			if on(i) {
				seen++
				if k := (n*seen)/active - done; k > 0 {
					if err := s.produce(cl, from+done, k, word); err != nil {
						s.t.Errorf("producing input: %v", err)
						return
					}
					done += k
				}
			}
			select {
			case <-s.stopProd:
				return
			case <-time.After(step):
			}
		}
	}()
}

func (s *sim) produced() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.words)
}

func (s *sim) instances() []*simInstance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.insts)
}

// live returns the incarnations that run and are neither leaving nor killed.
func (s *sim) live() []*simInstance {
	var out []*simInstance
	for _, in := range s.instances() {
		if !in.killed.Load() && !in.stopped.Load() {
			out = append(out, in)
		}
	}
	return out
}
