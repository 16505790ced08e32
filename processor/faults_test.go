package processor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
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
	"github.com/sluicehq/sluice/internal/topology"
)

// Fault-injection tests (issue #3). Each fails when the exactly-once
// guarantee breaks: the counter topology's output, read with read_committed,
// must hold for every key exactly the counts 1..n (no duplicate, no gap), the
// Pebble state must equal the committed changelog replayed to the checkpoint,
// and the counts in Pebble must add up to exactly the committed input
// offsets (an aborted write in Pebble would make them larger).
//
// The proxy tests (lost EndTxn responses, random connection drops) put
// internal/testkit/kafkaproxy between the processor and the broker and run
// on kfake and on the real broker. The interceptor tests (TxnOffsetCommit rejected, a
// changelog produce failing) need kfake's ControlKey and run on kfake only.

// faultSeed returns the seed of a randomized fault test: SLUICE_FAULT_SEED,
// or the time. It is logged so that a failure can be replayed.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SLUICE_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SLUICE_FAULT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (rerun with SLUICE_FAULT_SEED=%d)", seed, seed)
	return seed
}

// newFixtureOn is newFixture on the given brokers.
func newFixtureOn(t testing.TB, brokers []string, partitions int32) *fixture {
	app := testbroker.Unique(t, "flt")
	f := &fixture{t: t, brokers: brokers, app: app, input: app + "-in", output: app + "-out",
		stateDir: t.TempDir(), partitions: partitions, changelogTopic: topology.ChangelogTopic(app, "totals")}
	testbroker.CreateTopic(t, brokers, f.input, partitions, nil)
	testbroker.CreateTopic(t, brokers, f.output, partitions, nil)
	return f
}

// optsVia is opts with the processor's brokers replaced by addr (a proxy).
func (f *fixture) optsVia(addr string, extra ...Opt) []Opt {
	o := testOpts(f.t, []string{addr}, f.app)
	o = append(o, StateDir(f.stateDir))
	return append(o, extra...)
}

// committedTotal sums the group's committed input offsets.
func (f *fixture) committedTotal() int64 { return sum(f.committedOffsets("count")) }

// checkGuarantee asserts the exactly-once invariants after the processor
// stopped: the output holds for every key exactly 1..n and n adds up to the
// committed input; Pebble equals the committed changelog and counts exactly
// the committed input. want, if not nil, are the expected final counts.
func (f *fixture) checkGuarantee(want map[string]int) {
	f.t.Helper()
	committed := f.committedTotal()
	out := testbroker.ReadCommitted(f.t, f.brokers, f.output)
	last := map[string]int{}
	bad := 0
	for _, r := range out {
		n, _ := strconv.Atoi(string(r.Value))
		if n != last[string(r.Key)]+1 {
			if bad < 10 {
				f.t.Errorf("key %s: count %d after %d (partition %d offset %d): a duplicate or a gap", r.Key, n, last[string(r.Key)], r.Partition, r.Offset)
			}
			bad++
		}
		last[string(r.Key)] = n
	}
	if int64(len(out)) != committed {
		f.t.Errorf("output holds %d records for %d committed input records", len(out), committed)
	}
	if want != nil && fmt.Sprint(last) != fmt.Sprint(want) {
		f.t.Errorf("final counts %v, want %v", last, want)
	}
	st := f.assertStateMatchesChangelog("count", "totals")
	var inPebble int64
	for _, kv := range st {
		for _, v := range kv {
			n, err := codec.Int64{}.Decode([]byte(v))
			if err != nil {
				f.t.Fatal(err)
			}
			inPebble += n
		}
	}
	if inPebble != committed {
		f.t.Errorf("Pebble counts %d records, the group committed %d: Pebble holds writes of a transaction that did not commit, or lacks some that did", inPebble, committed)
	}
}

// evenCounts returns the final counts of records(prefix, n): keys k0..k4.
func evenCounts(n int) map[string]int {
	want := map[string]int{}
	for i := range n {
		want[fmt.Sprintf("k%d", i%5)]++
	}
	return want
}

// produceKVs is fixture.produce for goroutines other than the test's.
func produceKVs(brokers []string, topic string, kvs []string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return err
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(kvs))
	for i, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		recs[i] = &kgo.Record{Key: []byte(k), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cl.ProduceSync(ctx, recs...).FirstErr()
}

func newProxy(t *testing.T, brokers []string) *kafkaproxy.Proxy {
	t.Helper()
	px, err := kafkaproxy.New(brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	return px
}

// lostEndTxn cuts the connection that carries an EndTxn of the fixture's
// application after the broker answered it, before the answer reaches the
// processor. It picks the first EndTxn (after skip of them) whose Commit
// field equals commit; with untilGiveUp it also cuts every retry of that
// EndTxn (same producer id and epoch), so that the processor's End gives up
// and cannot learn the outcome; otherwise the first retry gets through.
type lostEndTxn struct {
	app         string
	commit      bool
	skip        int
	untilGiveUp bool

	mu       sync.Mutex
	seen     int
	target   *kmsg.EndTxnRequest
	cuts     int
	byCommit map[bool]int
}

func (l *lostEndTxn) hook(t *testing.T) func(*kafkaproxy.Request) kafkaproxy.Action {
	return func(r *kafkaproxy.Request) kafkaproxy.Action {
		if r.Key != int16(kmsg.EndTxn) {
			return kafkaproxy.Forward
		}
		kr, err := r.Decode()
		if err != nil {
			t.Errorf("decoding EndTxn: %v", err)
			return kafkaproxy.Forward
		}
		req := kr.(*kmsg.EndTxnRequest)
		if !strings.HasPrefix(req.TransactionalID, l.app+"-") {
			return kafkaproxy.Forward
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.byCommit == nil {
			l.byCommit = map[bool]int{}
		}
		l.byCommit[req.Commit]++
		if l.target != nil {
			if req.ProducerID == l.target.ProducerID && req.ProducerEpoch == l.target.ProducerEpoch && req.Commit == l.target.Commit && l.untilGiveUp {
				l.cuts++
				return kafkaproxy.CutBeforeResponse
			}
			return kafkaproxy.Forward
		}
		if req.Commit != l.commit {
			return kafkaproxy.Forward
		}
		if l.seen++; l.seen <= l.skip {
			return kafkaproxy.Forward
		}
		l.target = req
		l.cuts++
		return kafkaproxy.CutBeforeResponse
	}
}

func (l *lostEndTxn) counts() (cuts int, fired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cuts, l.target != nil
}

// TestIntegrationLostEndTxnResponse: an EndTxn reaches the broker, which
// ends the transaction, but the connection is cut before the response
// returns. When every retry meets the same fate, the processor's End gives up
// (after twice the transaction timeout) and the stage must take the unknown
// outcome path: drop its batches, restart its client, restore from
// checkpoints and changelogs. Nothing may be lost or duplicated, and the
// committed transaction the processor never heard of must reach Pebble by the
// restore. When only the first attempt is lost, franz-go's retry learns the
// outcome from the broker.
func TestIntegrationLostEndTxnResponse(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	const txnTimeout = 4 * time.Second // End gives up after twice this
	t.Run("commit lost until End gives up", func(t *testing.T) {
		f := newFixtureOn(t, testbroker.Brokers(t), 2)
		f.produce(records("v", 600)...)
		px := newProxy(t, f.brokers)
		lost := &lostEndTxn{app: f.app, commit: true, skip: 3, untilGiveUp: true}
		px.SetOnRequest(lost.hook(t))
		p, err := New(counterTopology(t, f.input, f.output, ""), f.optsVia(px.Addr(), MaxRecordsPerTransaction(30), TransactionTimeout(txnTimeout))...)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.run(p, func() bool { return f.committedTotal() == 600 }, 2*time.Minute); err != nil {
			t.Fatalf("Run: %v", err)
		}
		cuts, fired := lost.counts()
		m := p.Metrics().Stages["count"]
		t.Logf("faults: %d EndTxn(commit) responses cut (the first and its retries); stage metrics %+v; EndTxn by commit flag %v", cuts, m, lost.byCommit)
		if !fired {
			t.Fatal("no EndTxn was cut")
		}
		if m.Restarts == 0 {
			t.Error("the stage never restarted: the unknown-outcome path did not run")
		}
		if m.RestoredRecords == 0 {
			t.Error("the restart replayed no changelog record: the transaction whose outcome was lost did not reach Pebble by the restore")
		}
		f.checkGuarantee(evenCounts(600))
	})
	t.Run("commit lost once", func(t *testing.T) {
		f := newFixtureOn(t, testbroker.Brokers(t), 2)
		f.produce(records("v", 300)...)
		px := newProxy(t, f.brokers)
		lost := &lostEndTxn{app: f.app, commit: true, skip: 2}
		px.SetOnRequest(lost.hook(t))
		p, err := New(counterTopology(t, f.input, f.output, ""), f.optsVia(px.Addr(), MaxRecordsPerTransaction(30), TransactionTimeout(txnTimeout))...)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.run(p, func() bool { return f.committedTotal() == 300 }, 2*time.Minute); err != nil {
			t.Fatalf("Run: %v", err)
		}
		cuts, fired := lost.counts()
		m := p.Metrics().Stages["count"]
		// Whether the retry learns "committed" (Kafka with KIP-890
		// recognizes the retry) or an error (then the stage restarts) is
		// the broker's business; the guarantee must hold either way.
		t.Logf("faults: %d EndTxn(commit) response cut; stage metrics %+v", cuts, m)
		if !fired {
			t.Fatal("no EndTxn was cut")
		}
		f.checkGuarantee(evenCounts(300))
	})
	t.Run("abort lost until End gives up", func(t *testing.T) {
		// A record the Fail policy refuses makes the stage abort its
		// transaction (EndTxn with Commit=false) and stop. The abort's
		// response is lost until End gives up. The outcome is known all
		// the same (nothing asked to commit): the stage aborts again
		// (abortAgain: franz-go re-initializes the producer id at its
		// epoch, which aborts what is left, without an EndTxn) instead
		// of restarting, and stops with the record's error. (Before
		// abortAgain it restarted once, met the record again and
		// stopped.)
		f := newFixtureOn(t, testbroker.Brokers(t), 1)
		in := records("v", 200)
		in[120] = "k0=boom"
		f.produce(in...)
		px := newProxy(t, f.brokers)
		lost := &lostEndTxn{app: f.app, commit: false, untilGiveUp: true}
		px.SetOnRequest(lost.hook(t))
		p, err := New(counterTopology(t, f.input, f.output, ""), f.optsVia(px.Addr(), CommitInterval(time.Second), MaxRecordsPerTransaction(50), TransactionTimeout(txnTimeout))...)
		if err != nil {
			t.Fatal(err)
		}
		err = f.run(p, func() bool { return false }, 2*time.Minute)
		var rerr *RecordError
		if !errors.As(err, &rerr) || rerr.Offset != 120 {
			t.Fatalf("Run: %v, want the *RecordError of offset 120", err)
		}
		cuts, fired := lost.counts()
		m := p.Metrics().Stages["count"]
		t.Logf("faults: %d EndTxn(abort) responses cut (the first and its retries); stage metrics %+v; EndTxn by commit flag %v", cuts, m, lost.byCommit)
		if !fired {
			t.Fatal("no aborting EndTxn was cut")
		}
		if m.Restarts != 0 {
			t.Errorf("%d restarts, want 0: a lost abort is settled by aborting again, not by the unknown-outcome restart", m.Restarts)
		}
		if got := f.committedTotal(); got != 100 {
			t.Errorf("committed offset %d, want 100 (two transactions of 50; the third held the bad record)", got)
		}
		f.checkGuarantee(nil)
	})
}

// chaos drops connections at random moments while they carry a request:
// armed every 100 to 400 ms, it cuts the next request of one kind (a fetch,
// a produce, an offset commit into the transaction: AddPartitionsToTxn,
// AddOffsetsToTxn, TxnOffsetCommit, or an EndTxn), either before forwarding
// it or after the broker answered it and before the answer is delivered
// (chosen at random). The kinds take turns in a random order, so that every
// kind is hit.
type chaos struct {
	mu     sync.Mutex
	rng    *rand.Rand
	armed  bool
	turns  []string
	kind   string
	action kafkaproxy.Action
	counts map[string]int // "kind/request/action" -> drops
	total  int
}

var chaosKinds = []string{"fetch", "produce", "offsets", "endtxn"}

// arm arms the next drop, unless the last one is still waiting for its
// request.
func (c *chaos) arm() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		return
	}
	if len(c.turns) == 0 {
		c.turns = slices.Clone(chaosKinds)
		c.rng.Shuffle(len(c.turns), func(i, j int) { c.turns[i], c.turns[j] = c.turns[j], c.turns[i] })
	}
	c.armed = true
	c.kind, c.turns = c.turns[0], c.turns[1:]
	c.action = kafkaproxy.CutBeforeRequest
	if c.rng.IntN(2) == 0 {
		c.action = kafkaproxy.CutBeforeResponse
	}
}

func (c *chaos) hook(r *kafkaproxy.Request) kafkaproxy.Action {
	kind := ""
	switch kmsg.Key(r.Key) {
	case kmsg.Fetch:
		kind = "fetch"
	case kmsg.Produce:
		kind = "produce"
	case kmsg.AddPartitionsToTxn, kmsg.AddOffsetsToTxn, kmsg.TxnOffsetCommit:
		kind = "offsets"
	case kmsg.EndTxn:
		kind = "endtxn"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed || kind != c.kind {
		return kafkaproxy.Forward
	}
	c.armed = false
	c.counts[kind+"/"+kmsg.NameForKey(r.Key)+"/"+c.action.String()]++
	c.total++
	return c.action
}

func (c *chaos) report() (int, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total, maps.Clone(c.counts)
}

// TestIntegrationRandomConnectionDrops: while the processor works through
// input that keeps arriving, the proxy drops one of its connections every
// 100 to 400 ms (seeded), each time while it carries a fetch, a produce into
// the open transaction or a transactional request (see chaos). The restore
// consumer and the admin client go through the proxy too.
func TestIntegrationRandomConnectionDrops(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0xda3e39cb94b95bdb))
	ch := &chaos{rng: rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())), counts: map[string]int{}}
	const batches, perBatch = 40, 100
	f := newFixtureOn(t, testbroker.Brokers(t), 4)
	px := newProxy(t, f.brokers)
	px.SetOnRequest(ch.hook)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.optsVia(px.Addr(), MaxRecordsPerTransaction(50))...)
	if err != nil {
		t.Fatal(err)
	}

	// Input arrives in batches every 500 ms while the drops go on (20 s);
	// then the drops stop and the processor finishes.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := 0; b < batches; b++ {
			if err := produceKVs(f.brokers, f.input, records(fmt.Sprintf("b%d-", b), perBatch)); err != nil {
				t.Errorf("producing input: %v", err)
				return
			}
			next := time.After(500 * time.Millisecond)
			for due := false; !due; {
				select {
				case <-stop:
					return
				case <-next:
					due = true
				case <-time.After(time.Duration(100+rng.IntN(300)) * time.Millisecond):
					ch.arm()
				}
			}
		}
	}()
	defer func() {
		select {
		case <-done:
		default:
			close(stop)
			<-done
		}
	}()
	const total = batches * perBatch
	if err := f.run(p, func() bool {
		select {
		case <-done:
		default:
			return false
		}
		return f.committedTotal() == total
	}, 4*time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	drops, counts := ch.report()
	m := p.Metrics().Stages["count"]
	t.Logf("faults: %d connections dropped while carrying a request (by kind/request/when: %v); %d connections accepted; stage metrics %+v",
		drops, counts, px.Stats().Accepted, m)
	for _, k := range chaosKinds {
		n := 0
		for key, c := range counts {
			if strings.HasPrefix(key, k+"/") {
				n += c
			}
		}
		if n == 0 {
			t.Errorf("no drop during a %s request: the test proved less than it claims", k)
		}
	}
	f.checkGuarantee(evenCounts(total))
}

// TestTxnOffsetCommitRejected: the group coordinator rejects the
// transaction's offset commit (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION) at
// random moments (seeded). The transaction must not commit: its outputs and
// changelog records stay invisible, Pebble never sees its writes, and the
// records are processed again, once.
func TestTxnOffsetCommitRejected(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	for _, code := range []*kerr.Error{kerr.RebalanceInProgress, kerr.IllegalGeneration} {
		t.Run(code.Message, func(t *testing.T) {
			seed := faultSeed(t)
			rng := rand.New(rand.NewPCG(seed, 7))
			c := testbroker.NewKfake(t)
			f := newFixtureOn(t, c.ListenAddrs(), 2)
			f.produce(records("v", 600)...)
			group := f.app + "-count"
			const want = 4
			var mu sync.Mutex
			// The rejected calls are spaced 1 to 3 calls apart from the second
			// call on (seeded), so all four land within the first 14 of the
			// 24 or more commits the 600 records need.
			calls, rejected, next := 0, 0, 2+rng.IntN(3)
			c.ControlKey(int16(kmsg.TxnOffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				req := kr.(*kmsg.TxnOffsetCommitRequest)
				mu.Lock()
				defer mu.Unlock()
				if req.Group != group {
					return nil, nil, false
				}
				calls++
				if rejected >= want || calls != next {
					return nil, nil, false
				}
				rejected++
				next = calls + 1 + rng.IntN(3)
				return txnOffsetCommitAnswer(req, code), nil, true
			})
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(25))...)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.run(p, func() bool { return f.committedTotal() == 600 }, 2*time.Minute); err != nil {
				t.Fatalf("Run: %v", err)
			}
			mu.Lock()
			n := rejected
			mu.Unlock()
			m := p.Metrics().Stages["count"]
			t.Logf("faults: %d of %d TxnOffsetCommit requests rejected with %s; stage metrics %+v", n, calls, code.Message, m)
			if n != want {
				t.Fatalf("%d rejections, want %d", n, want)
			}
			if m.Aborts < int64(n) {
				t.Errorf("%d aborts for %d rejected offset commits: a rejected commit did not end its transaction uncommitted", m.Aborts, n)
			}
			// franz-go aborts after an abortable offset commit error;
			// that is a known outcome, not a reason to drop every
			// task and restore (issue 9 item 4).
			if m.Restarts != 0 {
				t.Errorf("%d stage restarts: a rejected offset commit is an abort, not an unknown outcome", m.Restarts)
			}
			f.checkGuarantee(evenCounts(600))
		})
	}
}

// TestChangelogProduceFails: mid-run, the broker rejects the produce of a
// changelog record (kfake's ControlKey picks the fourth produce request that
// carries the changelog topic and installs a one-shot fault for the
// changelog's partitions in it; the request's other partitions are handled
// normally). The transaction must not commit. A record-level error
// (INVALID_RECORD) stops the stage with the error, committing no offset past
// effects that did not commit and leaving Pebble untouched; a restart then
// processes the rest exactly once. An error that says the producer was
// fenced or its transaction aborted by the broker (INVALID_PRODUCER_EPOCH,
// TRANSACTION_ABORTABLE) is not the records' fault: the stage restarts its
// client and goes on. A retriable error is retried by franz-go.
func TestChangelogProduceFails(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	for _, tc := range []struct {
		err      *kerr.Error
		stops    bool
		restarts bool // the stage restarts its client
	}{
		{kerr.InvalidRecord, true, false},
		{kerr.NotEnoughReplicas, false, false},
		{kerr.InvalidProducerEpoch, false, true},
		{kerr.TransactionAbortable, false, true},
	} {
		t.Run(tc.err.Message, func(t *testing.T) {
			c := testbroker.NewKfake(t)
			f := newFixtureOn(t, c.ListenAddrs(), 2)
			f.produce(records("v", 400)...)
			// Created here (as the processor would) for its topic id:
			// produce requests v13+ name topics by id.
			compact := "compact"
			testbroker.CreateTopic(t, f.brokers, f.changelogTopic, 2, map[string]*string{"cleanup.policy": &compact})
			tds, err := testbroker.Admin(t, f.brokers).ListTopics(context.Background(), f.changelogTopic)
			if err != nil {
				t.Fatal(err)
			}
			changelogID := tds[f.changelogTopic].ID
			var seen atomic.Int32
			var fault atomic.Pointer[kfake.FaultHandle]
			c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				req := kr.(*kmsg.ProduceRequest)
				for _, rt := range req.Topics {
					if rt.Topic == f.changelogTopic || rt.TopicID == changelogID {
						if seen.Add(1) == 4 {
							fault.Store(c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: f.changelogTopic, Err: tc.err}))
							return nil, nil, false // dropped: not kept
						}
						break
					}
				}
				c.KeepControl()
				return nil, nil, false
			})
			topo := counterTopology(t, f.input, f.output, "")
			p, err := New(topo, f.opts(MaxRecordsPerTransaction(40))...)
			if err != nil {
				t.Fatal(err)
			}
			until := func() bool { return false }
			if !tc.stops {
				until = func() bool { return f.committedTotal() == 400 }
			}
			err = f.run(p, until, 2*time.Minute)
			h := fault.Load()
			if h == nil || h.Hits() == 0 {
				t.Fatalf("the fault never fired (Run: %v)", err)
			}
			m := p.Metrics().Stages["count"]
			committed := f.committedTotal()
			t.Logf("faults: %d changelog produce rejected with %s; Run: %v; committed %d of 400; stage metrics %+v", h.Hits(), tc.err.Message, err, committed, m)
			if !tc.stops {
				if err != nil {
					t.Fatalf("Run: %v; the stage should have gone on", err)
				}
				if tc.restarts && m.Restarts == 0 {
					t.Errorf("the stage did not restart its client")
				}
				f.checkGuarantee(evenCounts(400))
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Run: %v, want an error wrapping %s", err, tc.err.Message)
			}
			if committed >= 400 {
				t.Errorf("all 400 input offsets committed although a transaction failed")
			}
			if m.Aborts == 0 {
				t.Errorf("no transaction aborted")
			}
			f.checkGuarantee(nil)

			// A restart processes the rest exactly once.
			p2, err := New(topo, f.opts()...)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.run(p2, func() bool { return f.committedTotal() == 400 }, 2*time.Minute); err != nil {
				t.Fatalf("Run after the failure: %v", err)
			}
			f.checkGuarantee(evenCounts(400))
		})
	}
}
