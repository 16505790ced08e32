package processor

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// TestChangelogProduceStalls: mid-run, the produce requests that carry the
// changelog stall for longer than the flush deadline (half the transaction
// timeout after the transaction began), as while a broker dies and the
// cluster fails over, then recover. Three kinds of stall:
//
//   - "retriable error": every such request is answered NOT_ENOUGH_REPLICAS
//     for 1.5 transaction timeouts (franz-go retries);
//   - "connection cut": every such request's connection is closed before it
//     is handled, for 1.5 transaction timeouts (a killed broker: franz-go
//     retries on a new connection);
//   - "held": every such request is held for 0.6 transaction timeouts
//     before it is handled and written, for 1.25 transaction timeouts (a
//     broker that answers late: the records land in the transaction after
//     its flush gave up, so its abort must hide them);
//   - "abort refused": as "retriable error", and every EndTxn that aborts
//     is answered COORDINATOR_LOAD_IN_PROGRESS for 2.5 transaction
//     timeouts, longer than End waits: End fails after deciding not to
//     commit, and the stage must abort again (abortAgain) rather than
//     restart.
//
// The stage must abort each stalled transaction before the broker times it
// out, go on without restarting its client (StageMetrics.Restarts == 0,
// TransientAborts > 0), and stay exactly-once: read_committed output,
// Pebble and the committed offsets agree, every count exactly once.
//
// Mutation: with the flush bounded by the whole transaction timeout from
// its start and every such failure restarting the client (the code before
// issue 11's fix), "retriable error" and "connection cut" restart the stage
// (the broker times the transaction out first: INVALID_PRODUCER_EPOCH), and
// "held" flushes late but commits, aborting nothing: all three fail. Without
// abortAgain, "abort refused" restarts the stage.
func TestChangelogProduceStalls(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	const txnTimeout = 2 * time.Second
	for _, kind := range []string{"retriable error", "connection cut", "held", "abort refused"} {
		t.Run(kind, func(t *testing.T) {
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
			var (
				mu      sync.Mutex
				seen    int
				until   time.Time // the stall's end; zero: not begun
				stalled atomic.Int32
				fault   *kfake.FaultHandle
				// endTxnFault refuses aborts ("abort refused").
				endTxnFault atomic.Pointer[kfake.FaultHandle]
			)
			window := 3 * txnTimeout / 2
			if kind == "held" {
				window = 5 * txnTimeout / 4
			}
			c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				changelog := false
				for _, rt := range kr.(*kmsg.ProduceRequest).Topics {
					changelog = changelog || rt.Topic == f.changelogTopic || rt.TopicID == changelogID
				}
				if !changelog {
					return nil, nil, false
				}
				mu.Lock()
				seen++
				if seen == 4 {
					until = time.Now().Add(window)
					if kind == "retriable error" || kind == "abort refused" {
						fault = c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: f.changelogTopic, Err: kerr.NotEnoughReplicas, Count: -1})
						time.AfterFunc(window, fault.Remove)
					}
					if kind == "abort refused" {
						refused := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.EndTxn}, TopLevel: true, Err: kerr.CoordinatorLoadInProgress, Count: -1,
							When: func(r kmsg.Request) bool { return !r.(*kmsg.EndTxnRequest).Commit }})
						endTxnFault.Store(refused)
						time.AfterFunc(5*txnTimeout/2, refused.Remove)
					}
				}
				in := !until.IsZero() && time.Now().Before(until)
				mu.Unlock()
				if !in {
					return nil, nil, false
				}
				stalled.Add(1)
				switch kind {
				case "connection cut":
					return nil, errors.New("connection cut by the test"), true
				case "held":
					c.SleepControl(func() { time.Sleep(3 * txnTimeout / 5) })
				}
				return nil, nil, false // handled normally (or by the fault)
			})
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(40), TransactionTimeout(txnTimeout))...)
			if err != nil {
				t.Fatal(err)
			}
			err = f.run(p, func() bool { return f.committedTotal() == 400 }, 2*time.Minute)
			m := p.Metrics().Stages["count"]
			t.Logf("%d changelog produce requests stalled (%s) for %v; Run: %v; stage metrics %+v", stalled.Load(), kind, window, err, m)
			if stalled.Load() == 0 {
				t.Fatalf("the stall never began (Run: %v)", err)
			}
			if err != nil {
				t.Fatalf("Run: %v; the stage should have gone on", err)
			}
			if m.Restarts != 0 {
				t.Errorf("%d stage restarts: a flush that failed while the broker stalled must abort and go on, not restart the client", m.Restarts)
			}
			if h := endTxnFault.Load(); kind == "abort refused" && (h == nil || h.Hits() == 0) {
				t.Errorf("no EndTxn abort was refused: the test proved nothing about aborting again")
			}
			if m.TransientAborts == 0 {
				t.Errorf("no transient abort: the flush outlived the stall, the test proved nothing about aborting")
			}
			f.checkGuarantee(evenCounts(400))
		})
	}
}

// TestGatherCapShrinksAndGrows checks the pacing hook that keeps a flush
// that times out by itself (a large transaction on a loaded machine) from
// timing out forever: each such abort halves the next gathers, each commit
// doubles them again, up to no cap at all.
func TestGatherCapShrinksAndGrows(t *testing.T) {
	st := &stage{cfg: stageCfg{maxRecords: 1000}}
	st.shrinkGathers(600)
	if st.gatherCap != 300 {
		t.Fatalf("after a timed-out flush of 600 records: cap %d, want 300", st.gatherCap)
	}
	st.shrinkGathers(300)
	st.shrinkGathers(2000) // a larger count never raises the cap
	if st.gatherCap != 150 {
		t.Fatalf("after another of 300: cap %d, want 150", st.gatherCap)
	}
	st.shrinkGathers(1)
	if st.gatherCap != 1 {
		t.Fatalf("after one of 1 record: cap %d, want 1 (never 0, which means no cap)", st.gatherCap)
	}
	for i, want := range []int{2, 4, 8, 16, 32, 64, 128, 256, 512, 0} {
		st.growGathers()
		if st.gatherCap != want {
			t.Fatalf("after %d commits: cap %d, want %d", i+1, st.gatherCap, want)
		}
	}
}

// TestWatchLoggerNotesEnding: the watch notes what franz-go's End decided
// from its "transaction session ending" line (abortAgain relies on it).
// Mutation: a watch that ignores will_try_commit notes every End as an
// abort, and this fails.
func TestWatchLoggerNotesEnding(t *testing.T) {
	var unconfirmed atomic.Bool
	var ending atomic.Int32
	w := watchLogger{kgo.BasicLogger(io.Discard, kgo.LogLevelWarn, nil), &unconfirmed, &ending}
	for _, tc := range []struct {
		keyvals []any
		want    int32
	}{
		{[]any{"was_failed", false, "want_commit", true, "can_try_commit", true, "will_try_commit", true}, endTriedCommit},
		{[]any{"was_failed", true, "want_commit", true, "can_try_commit", false, "will_try_commit", false}, endTriedAbort},
		{[]any{"will_try_commit", false}, endTriedAbort},
		// A line without the key, or with another type, says nothing:
		// unknown, so that a failed End restarts instead of aborting
		// again a transaction that may have committed.
		{[]any{"was_failed", false, "want_commit", true}, endUnknown},
		{[]any{"will_try_commit", "false"}, endUnknown},
	} {
		ending.Store(endUnknown)
		w.Log(kgo.LogLevelInfo, "beginning transact session")
		if got := ending.Load(); got != endUnknown {
			t.Fatalf("another line noted %d", got)
		}
		w.Log(kgo.LogLevelInfo, "transaction session ending", tc.keyvals...)
		if got := ending.Load(); got != tc.want {
			t.Errorf("%v: noted %d, want %d", tc.keyvals, got, tc.want)
		}
	}
}

// TestTimersThroughProduceStall: a wall-clock timer counts its ticks in a
// store and emits each tick in the same transaction; the produce requests
// of the ticks stall past the flush deadline for 1.5 transaction timeouts.
// The transactions that fired timers abort and the stage goes on without a
// restart: the ticks each task emits, read committed, must still be 1, 2,
// 3, ... with no gap or repeat (a timer whose transaction aborted fires
// again, from the count the store committed). Mutation: settleTransient
// without discardDirty (the aborted cycle's tick count and wall-clock
// progress kept in the task) repeats or skips ticks, and this fails.
func TestTimersThroughProduceStall(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	const txnTimeout = 2 * time.Second
	c := testbroker.NewKfake(t)
	brokers := c.ListenAddrs()
	app := testbroker.Unique(t, "stall-timers")
	events, ticksTopic := app+"-events", app+"-ticks"
	for _, tp := range []string{events, ticksTopic} {
		testbroker.CreateTopic(t, brokers, tp, 2, nil)
	}
	b := stream.NewBuilder()
	ticks := stream.DeclareStore(b, "ticks", codec.String{}, codec.Int64{})
	out := stream.DeclareOutput(b, ticksTopic, codec.String{}, codec.String{})
	tick := func(h *stream.Handle, now time.Time) error {
		n, _, err := stream.Get(h, ticks, "wall")
		if err != nil {
			return err
		}
		if err := stream.Put(h, ticks, "wall", n+1); err != nil {
			return err
		}
		return stream.Emit(h, out, fmt.Sprintf("wall-%d", h.Partition()), fmt.Sprint(n+1))
	}
	stream.Process(stream.Source(b, events, codec.String{}, codec.String{}, stream.Named("events")),
		func(*stream.Handle, stream.Record[string, string]) error { return nil },
		stream.Uses(ticks), stream.EmitsTo(out),
		stream.Every(200*time.Millisecond, stream.WallClock, tick), stream.Named("tick"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int32
	var fault atomic.Pointer[kfake.FaultHandle]
	c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		// Every produce request is the processor's (the test produces
		// none): the sixth starts the stall.
		if seen.Add(1) == 6 {
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: ticksTopic, Err: kerr.NotEnoughReplicas, Count: -1})
			fault.Store(h)
			time.AfterFunc(3*txnTimeout/2, h.Remove)
		}
		return nil, nil, false
	})
	p, err := New(topo, append(testOpts(t, brokers, app), TransactionTimeout(txnTimeout))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// Run until the stall is over and both tasks ticked again after it.
	var stalledAt int
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		h := fault.Load()
		if h == nil {
			continue
		}
		last := lastTicks(testbroker.ReadCommittedWithin(t, 30*time.Second, brokers, ticksTopic))
		if stalledAt == 0 {
			stalledAt = max(last["wall-0"], last["wall-1"], 1)
		}
		if p.Metrics().Stages["events"].Commits > 0 && last["wall-0"] > stalledAt+3 && last["wall-1"] > stalledAt+3 {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["events"]
	t.Logf("metrics %+v", m)
	if h := fault.Load(); h == nil || h.Hits() == 0 {
		t.Fatalf("the stall never happened")
	}
	last := map[string]int{}
	for _, r := range testbroker.ReadCommitted(t, brokers, ticksTopic) {
		k := string(r.Key)
		var n int
		fmt.Sscan(string(r.Value), &n)
		if n != last[k]+1 {
			t.Errorf("%s: tick %d follows %d: a timer's tick repeated or lost across an aborted transaction", k, n, last[k])
		}
		last[k] = n
	}
	if last["wall-0"] <= stalledAt || last["wall-1"] <= stalledAt {
		t.Errorf("ticks %v: the timers did not go on after the stall (at %d)", last, stalledAt)
	}
	if m.Restarts != 0 {
		t.Errorf("%d restarts: the stall must cost aborts, not restarts", m.Restarts)
	}
	if m.TransientAborts == 0 {
		t.Errorf("no transient abort: the stall did not outlast the flush deadline")
	}
}

// lastTicks returns the last tick of each task's wall-clock counter.
func lastTicks(recs []*kgo.Record) map[string]int {
	last := map[string]int{}
	for _, r := range recs {
		var n int
		fmt.Sscan(string(r.Value), &n)
		last[string(r.Key)] = max(last[string(r.Key)], n)
	}
	return last
}

// TestOffsetCommitRefusedIsFatal: the broker refuses every TxnOffsetCommit of
// the stage's group with GROUP_AUTHORIZATION_FAILED (an ACL that only the
// offset commit needs: heartbeats and fetches still pass). franz-go aborts
// the transaction and End reports the refusal; that is not the broker's
// passing trouble, so the stage must not settle it by aborting again and
// going on (it would reprocess the same records into aborted transactions
// forever, in silence): Run returns a *FatalError naming the group ACL.
// Mutation: abortAgain for every End error (retriableEnd always true) runs
// to the deadline with TransientAborts rising, and this fails.
func TestOffsetCommitRefusedIsFatal(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 2)
	f.produce(records("v", 100)...)
	group := f.app + "-count"
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.TxnOffsetCommitRequest)
		if req.Group != group {
			return nil, nil, false
		}
		return txnOffsetCommitAnswer(req, kerr.GroupAuthorizationFailed), nil, true
	})
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(25))...)
	if err != nil {
		t.Fatal(err)
	}
	err = f.run(p, func() bool { return false }, time.Minute)
	var fe *FatalError
	if !errors.As(err, &fe) || !errors.Is(err, kerr.GroupAuthorizationFailed) || !strings.Contains(err.Error(), group) {
		t.Fatalf("Run: %v; want a *FatalError for GROUP_AUTHORIZATION_FAILED naming the group %q", err, group)
	}
	if m := p.Metrics().Stages["count"]; m.TransientAborts != 0 {
		t.Errorf("%d transient aborts: a refused offset commit was settled as the broker's passing trouble", m.TransientAborts)
	}
	if n := f.committedTotal(); n != 0 {
		t.Errorf("%d input records committed through a refused offset commit", n)
	}
}
