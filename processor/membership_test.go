package processor

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// Membership and failure classification (issue 9). The randomized
// simulation is TestMembershipSim; these are the directed checks of the
// pieces it relies on.

// unitStage returns a stage with no stores and no Kafka, for the assignment
// bookkeeping.
func unitStage(t *testing.T, g Guarantee) *stage {
	p := &Processor{now: time.Now}
	p.cfg.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	st := &stage{p: p, name: "s", log: p.cfg.logger, storeByName: map[string]*storeInfo{}}
	st.cfg.guarantee = g
	st.inputs = []topicRef{{name: "a"}, {name: "b"}}
	st.mu.tasks = map[int32]*task{}
	st.mu.revoked = map[int32]bool{}
	return st
}

func assigned(ps ...int32) map[string]map[int32]kgo.Offset {
	m := map[string]map[int32]kgo.Offset{"a": {}, "b": {}}
	for _, p := range ps {
		m["a"][p] = kgo.NewOffset().At(3)
		m["b"][p] = kgo.NewOffset().At(4)
	}
	return m
}

// TestOnSyncRevokesWhatIsMissing: every assignment the member receives is
// checked against the tasks it holds; a task with an input partition missing
// from it is revoked even though no revoke callback reports it (franz-go's
// GroupTransactSession reports one revoke per transaction).
func TestOnSyncRevokesWhatIsMissing(t *testing.T) {
	st := unitStage(t, ExactlyOnce)
	if _, err := st.onAssigned(context.Background(), assigned(0, 1, 2)); err != nil {
		t.Fatal(err)
	}
	st.onSync(map[string][]int32{"a": {0, 1, 2}, "b": {0, 1, 2}})
	if len(st.mu.revoked) != 0 {
		t.Fatalf("revoked %v after an assignment that keeps everything", st.mu.revoked)
	}
	st.onSync(map[string][]int32{"a": {0, 1}, "b": {0, 1}}) // p2 moves: a callback would tell
	st.onSync(map[string][]int32{"a": {0}, "b": {0, 1}})    // p1 moves: no callback would
	if !st.mu.revoked[1] || !st.mu.revoked[2] || st.mu.revoked[0] {
		t.Fatalf("revoked = %v, want partitions 1 and 2", st.mu.revoked)
	}
	if t1, revoked := st.taskOf(1); t1 == nil || !revoked {
		t.Fatalf("taskOf(1) = %v, %v: want the task, revoked", t1, revoked)
	}
	old := st.mu.tasks[1]
	// p1 comes back: the task is restored, not kept.
	if _, err := st.onAssigned(context.Background(), map[string]map[int32]kgo.Offset{"a": {1: kgo.NewOffset().At(9)}}); err != nil {
		t.Fatal(err)
	}
	if st.mu.tasks[1] == old || !old.isClosed() || st.mu.revoked[1] {
		t.Fatalf("partition 1 came back: task kept (same %v, old closed %v, revoked %v)", st.mu.tasks[1] == old, old.isClosed(), st.mu.revoked[1])
	}
}

// TestOnAssignedRestoresAStaleTask: kgo hands a partition to the
// assignment callback only when it did not consume it a moment ago; if the
// stage still holds a live task that consumes that input, a revoke or loss
// went unreported and the task is stale: it is replaced by a restored one.
// An input the task never had (the rest of a task, assigned later) keeps it.
func TestOnAssignedRestoresAStaleTask(t *testing.T) {
	st := unitStage(t, ExactlyOnce)
	if _, err := st.onAssigned(context.Background(), map[string]map[int32]kgo.Offset{"a": {0: kgo.NewOffset().At(1)}}); err != nil {
		t.Fatal(err)
	}
	first := st.mu.tasks[0]
	// The rest of the task: input b, which it did not have.
	if _, err := st.onAssigned(context.Background(), map[string]map[int32]kgo.Offset{"b": {0: kgo.NewOffset().At(1)}}); err != nil {
		t.Fatal(err)
	}
	if st.mu.tasks[0] != first || !first.topics["a"] || !first.topics["b"] {
		t.Fatalf("the rest of a task replaced it (same %v, topics %v)", st.mu.tasks[0] == first, first.topics)
	}
	// Input a again: lost and regained without a callback.
	if _, err := st.onAssigned(context.Background(), map[string]map[int32]kgo.Offset{"a": {0: kgo.NewOffset().At(7)}}); err != nil {
		t.Fatal(err)
	}
	if st.mu.tasks[0] == first || !first.isClosed() {
		t.Fatal("a task whose input came back after an unreported loss was kept")
	}
}

// TestRecordOfAMovedPartitionAbortsTheCycle: under exactly-once, a record
// of a partition whose task was revoked during the cycle aborts the cycle on
// purpose (errPartitionMoved), and a record with no task at all is a bug
// that rebuilds (errUnknownOutcome); neither is processed.
func TestRecordOfAMovedPartitionAbortsTheCycle(t *testing.T) {
	st := unitStage(t, ExactlyOnce)
	if _, err := st.onAssigned(context.Background(), assigned(0)); err != nil {
		t.Fatal(err)
	}
	st.onSync(map[string][]int32{"a": {}, "b": {}})
	err := st.process(nil, &kgo.Record{Topic: "a", Partition: 0, Offset: 5})
	if !errors.Is(err, errPartitionMoved) {
		t.Fatalf("record of a revoked task: %v, want errPartitionMoved", err)
	}
	err = st.process(nil, &kgo.Record{Topic: "a", Partition: 7, Offset: 5})
	if !errors.Is(err, errUnknownOutcome) {
		t.Fatalf("record with no task: %v, want errUnknownOutcome", err)
	}
}

// TestEndTxnUnconfirmed: the broker answers a committing EndTxn with
// UNKNOWN_SERVER_ERROR. franz-go retries as an abort without sending it and
// reports "not committed", though a broker may have committed: the stage
// must treat that as an unknown outcome (new producer, restore), and stay
// exactly-once. Every other uncommitted end it sees is an abort.
func TestEndTxnUnconfirmed(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 2)
	f.produce(records("v", 400)...)
	var mu sync.Mutex
	commits, failed := 0, 0
	c.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.EndTxnRequest)
		mu.Lock()
		defer mu.Unlock()
		if !req.Commit || !strings.HasPrefix(req.TransactionalID, f.app) {
			return nil, nil, false
		}
		commits++
		if commits != 3 {
			return nil, nil, false
		}
		failed++
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.Version = req.Version
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(25))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p, func() bool { return f.committedTotal() == 400 }, 2*time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["count"]
	t.Logf("%d EndTxn commits, %d answered UNKNOWN_SERVER_ERROR; metrics %+v", commits, failed, m)
	if failed != 1 {
		t.Fatalf("%d faults injected, want 1", failed)
	}
	if m.Restarts < 1 {
		t.Errorf("no restart after an EndTxn whose outcome franz-go could not confirm")
	}
	f.checkGuarantee(evenCounts(400))
}

// TestFatalErrorsStopRun: errors that retrying cannot fix make Run return a
// *FatalError that names the cause and the fix within seconds, instead of
// restarting the stage forever.
func TestFatalErrorsStopRun(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	for _, tc := range []struct {
		name string
		key  kmsg.Key
		code *kerr.Error
		fix  string
	}{
		{"transactional id not authorized", kmsg.InitProducerID, kerr.TransactionalIDAuthorizationFailed, "TransactionalId"},
		{"transaction timeout above the broker's maximum", kmsg.InitProducerID, kerr.InvalidTransactionTimeout, "transaction.max.timeout.ms"},
		{"group not authorized", kmsg.JoinGroup, kerr.GroupAuthorizationFailed, "consumer group"},
		{"session timeout outside the broker's bounds", kmsg.JoinGroup, kerr.InvalidSessionTimeout, "group.min.session.timeout.ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testbroker.NewKfake(t)
			f := newFixtureOn(t, c.ListenAddrs(), 1)
			f.produce(records("v", 10)...)
			c.ControlKey(int16(tc.key), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				resp := kr.ResponseKind()
				resp.SetVersion(kr.GetVersion())
				switch r := resp.(type) {
				case *kmsg.InitProducerIDResponse:
					r.ErrorCode = tc.code.Code
				case *kmsg.JoinGroupResponse:
					r.ErrorCode = tc.code.Code
				}
				return resp, nil, true
			})
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts()...)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err = p.Run(ctx)
			took := time.Since(start)
			fe, ok := errors.AsType[*FatalError](err)
			if !ok {
				t.Fatalf("Run returned %v after %v, want a *FatalError", err, took)
			}
			if !errors.Is(err, tc.code) || !strings.Contains(fe.Fix, tc.fix) {
				t.Errorf("FatalError %q: want cause %v and a fix naming %q", err, tc.code, tc.fix)
			}
			if took > 20*time.Second {
				t.Errorf("Run took %v to give up", took)
			}
			t.Logf("Run returned after %v: %v", took, err)
		})
	}
}

// TestRestartBackoff: restarts that follow each other without a commit wait
// longer and longer, up to the cap, with jitter.
func TestRestartBackoff(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n <= 20; n++ {
		d := restartBackoff(n)
		if d < restartBackoffMin*8/10 || d > restartBackoffMax*12/10 {
			t.Fatalf("backoff %d = %v, outside [%v, %v]", n, d, restartBackoffMin*8/10, restartBackoffMax*12/10)
		}
		if n <= 5 && d <= prev*6/10 {
			t.Errorf("backoff %d = %v does not grow from %v", n, d, prev)
		}
		prev = d
	}
	if d := restartBackoff(30); d < restartBackoffMax*8/10 {
		t.Errorf("backoff after 30 restarts = %v, want about the cap %v", d, restartBackoffMax)
	}
}

// TestCheckpointTimeIsBeforeTheCommit: a task's checkpoint carries the time
// its transaction began to end (before EndTxn), not the time it was applied:
// the tombstone-age rule (checkpoint.Plan) must not find a checkpoint
// younger than the changelog records it covers (issue 9 item 8).
func TestCheckpointTimeIsBeforeTheCommit(t *testing.T) {
	st, store := countStage(t)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st.p.now = func() time.Time { clock = clock.Add(time.Minute); return clock }
	tk := st.mu.tasks[0]
	if err := tk.write(store, []byte("k"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	st.dirty = append(st.dirty, tk)
	st.produceChangelogs(nopProducer{}) // the cycle begins to end
	ending := clock
	if err := st.applyDirty(); err != nil { // later, after EndTxn
		t.Fatal(err)
	}
	cp, found, err := st.db.Checkpoint(tk.id)
	if err != nil || !found {
		t.Fatalf("checkpoint: found %v, %v", found, err)
	}
	if !cp.Written.Equal(ending) {
		t.Fatalf("checkpoint written at %v, want %v (when the transaction began to end)", cp.Written, ending)
	}
}

type nopProducer struct{}

func (nopProducer) Produce(context.Context, *kgo.Record, func(*kgo.Record, error)) {}

// TestWatchLogger: the watch sees franz-go's info lines whatever the inner
// logger's level, forwards only what the inner logger wants, and lets a
// debug logger have franz-go's debug lines.
func TestWatchLogger(t *testing.T) {
	var got []string
	for _, inner := range []kgo.LogLevel{kgo.LogLevelWarn, kgo.LogLevelDebug} {
		got = got[:0]
		var flag atomic.Bool
		w := watchLogger{levelLogger{inner, &got}, &flag, nil}
		if w.Level() < kgo.LogLevelInfo || w.Level() < inner {
			t.Errorf("inner %v: watch asks franz-go for %v", inner, w.Level())
		}
		w.Log(kgo.LogLevelInfo, "end transaction returned an unknown server error; the commit is unconfirmed, retrying as abort")
		w.Log(kgo.LogLevelDebug, "debug line")
		if !flag.Load() {
			t.Errorf("inner %v: the unconfirmed line was not seen", inner)
		}
		want := 0
		if inner == kgo.LogLevelDebug {
			want = 2
		}
		if len(got) != want {
			t.Errorf("inner %v: forwarded %v, want %d lines", inner, got, want)
		}
	}
}

type levelLogger struct {
	level kgo.LogLevel
	lines *[]string
}

func (l levelLogger) Level() kgo.LogLevel { return l.level }
func (l levelLogger) Log(_ kgo.LogLevel, msg string, _ ...any) {
	*l.lines = append(*l.lines, msg)
}
