package processor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/balancer"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// Adversarial review tests of the membership and fencing changes (423ac15,
// a9b6d71). Each is a sequence that broke an invariant (or liveness) before
// the fixes that followed the review: an unconfirmed EndTxn taken for an
// abort after an empty revoke or with the user's franz-go logger, End hung on
// its forced heartbeat while rebalances were blocked, an input topic deleted
// under a running stage.

// committedButUnknown installs a control on kfake that lets the broker
// COMMIT the nth committing EndTxn of the application (a twin of the
// request, sent on another connection, does it) and then answers the
// original with UNKNOWN_SERVER_ERROR: the broker committed, the client
// cannot tell. before runs in the control just before the twin is sent.
func committedButUnknown(t *testing.T, c *kfake.Cluster, brokers []string, app string, nth int, before func()) *atomic.Int32 {
	return committedButUnknownWhen(t, c, brokers, app, func(n int) bool { return n == nth }, before)
}

func committedButUnknownWhen(t *testing.T, c *kfake.Cluster, brokers []string, app string, pick func(n int) bool, before func()) *atomic.Int32 {
	twin := testbroker.NewClient(t, brokers)
	var mu sync.Mutex
	commits := 0
	passing := false
	fired := &atomic.Int32{}
	c.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.EndTxnRequest)
		mu.Lock()
		if passing || !req.Commit || !strings.HasPrefix(req.TransactionalID, app) {
			mu.Unlock()
			return nil, nil, false
		}
		commits++
		if fired.Load() > 0 || !pick(commits) {
			mu.Unlock()
			return nil, nil, false
		}
		passing = true
		mu.Unlock()
		if before != nil {
			before()
		}
		var twinErr error
		c.SleepControl(func() {
			dup := kmsg.NewPtrEndTxnRequest()
			dup.TransactionalID = req.TransactionalID
			dup.ProducerID = req.ProducerID
			dup.ProducerEpoch = req.ProducerEpoch
			dup.Commit = true
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := dup.RequestWith(ctx, twin)
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			twinErr = err
		})
		mu.Lock()
		passing = false
		mu.Unlock()
		if twinErr != nil {
			t.Errorf("the twin EndTxn did not commit: %v", twinErr)
		}
		fired.Add(1)
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.Version = req.Version
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	return fired
}

// TestReviewUnconfirmedCommitAfterEmptyRevoke: in cooperative mode kgo calls
// OnPartitionsRevoked with an EMPTY map at the end of every group session
// (consumer_group.go, revoke(revokeThisSession): "consumer calling onRevoke
// at the end of a session"), i.e. at every rebalance of the group, even one
// that moves nothing of this member. franz-go's GroupTransactSession wrapper
// does not set its own revoked flag for it ("allowing next commit") but
// calls the user callback: stage.onRevoked sets sawRevoke. The next cycle
// commits normally (franz-go tries the commit), and cycleEOS then reads
// revoked=true; the case `commit && !revoked && st.unconfirmed.Load()`
// (eos.go) is skipped, and an EndTxn that the broker committed but answered
// UNKNOWN_SERVER_ERROR is taken for an abort: the stage rewinds and
// processes the same records again, committing their outputs twice.
//
// The test calls st.onRevoked with an empty map from inside the EndTxn (the
// state franz-go's wrapper leaves after the empty revoke: sawRevoke set,
// franz-go's flag clear, the commit attempted).
func TestReviewUnconfirmedCommitAfterEmptyRevoke(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 300)...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(25))...)
	if err != nil {
		t.Fatal(err)
	}
	var stp atomic.Pointer[stage]
	p.hooks.afterCommit = func(st *stage) error { stp.Store(st); return nil }
	fired := committedButUnknown(t, c, f.brokers, f.app, 3, func() {
		if st := stp.Load(); st != nil {
			// What franz-go does at the end of a cooperative session.
			st.onRevoked(context.Background(), nil, map[string][]int32{})
		}
	})
	if err := f.run(p, func() bool { return f.committedTotal() == 300 }, time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["count"]
	t.Logf("faults %d; metrics %+v", fired.Load(), m)
	if fired.Load() != 1 {
		t.Fatalf("%d faults, want 1", fired.Load())
	}
	if m.Restarts == 0 {
		t.Errorf("a committed EndTxn answered UNKNOWN_SERVER_ERROR after an empty revoke was taken for an abort (no restart)")
	}
	f.checkGuarantee(evenCounts(300))
}

// TestReviewUnconfirmedCommitWithUserLogger: KafkaOptions(kgo.WithLogger(..))
// is appended after the stage's own options (stage.clientOpts), so it
// replaces watchLogger: the "unconfirmed" line is never seen and an EndTxn
// that the broker committed but answered UNKNOWN_SERVER_ERROR is taken for
// an abort. Passing a logger to franz-go is ordinary (TLS and SASL are what
// KafkaOptions is documented for, but nothing refuses a logger).
func TestReviewUnconfirmedCommitWithUserLogger(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 300)...)
	logger := kgo.BasicLogger(testWriter{t}, kgo.LogLevelWarn, nil)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(25), KafkaOptions(kgo.WithLogger(logger)))...)
	if err != nil {
		t.Fatal(err)
	}
	fired := committedButUnknown(t, c, f.brokers, f.app, 3, nil)
	if err := f.run(p, func() bool { return f.committedTotal() == 300 }, time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["count"]
	t.Logf("faults %d; metrics %+v", fired.Load(), m)
	if fired.Load() != 1 {
		t.Fatalf("%d faults, want 1", fired.Load())
	}
	if m.Restarts == 0 {
		t.Errorf("a committed EndTxn answered UNKNOWN_SERVER_ERROR was taken for an abort (no restart)")
	}
	f.checkGuarantee(evenCounts(300))
}

// TestReviewUnconfirmedCommitControl: the same fault with nothing else: the
// stage must restart and stay exactly-once (control for the two tests
// above: the twin-EndTxn fault itself is handled).
func TestReviewUnconfirmedCommitControl(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 300)...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(25))...)
	if err != nil {
		t.Fatal(err)
	}
	fired := committedButUnknown(t, c, f.brokers, f.app, 3, nil)
	if err := f.run(p, func() bool { return f.committedTotal() == 300 }, time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["count"]
	t.Logf("faults %d; metrics %+v", fired.Load(), m)
	if fired.Load() != 1 {
		t.Fatalf("%d faults, want 1", fired.Load())
	}
	f.checkGuarantee(evenCounts(300))
}

// TestReviewEndHangsAfterHeartbeatLoss: BlockRebalanceOnPoll (423ac15)
// holds back kgo's onLost (manageFailWait waits for AllowRebalance first),
// and so also the close of the GroupTransactSession's lostCh. When a
// heartbeat fails with an error other than REBALANCE_IN_PROGRESS while a
// cycle holds polled records (a zombie resumed after its session timeout
// gets UNKNOWN_MEMBER_ID; a coordinator that stays away), kgo's heartbeat
// loop returns at once. End's TxnOffsetCommit then runs (an abortable
// error does not skip the forced heartbeat: `g != nil && commitErr == nil`)
// and End sends on heartbeatForceCh, which nothing receives any more, with
// revokedCh and lostCh unclosable until End returns: End waits for its
// context, 2*TransactionTimeout, then fails its abort with the expired
// context (unknown outcome, restart). Meanwhile the transaction stays open
// on the broker until it times out: the new owner's restore waits on it.
func TestReviewEndHangsAfterHeartbeatLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	const txnTimeout = 4 * time.Second
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 300)...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(CommitInterval(3*time.Second), TransactionTimeout(txnTimeout))...)
	if err != nil {
		t.Fatal(err)
	}
	var armed, hbFired, tocFired atomic.Bool
	var firedAt atomic.Int64
	c.ControlKey(int16(kmsg.Heartbeat), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.HeartbeatRequest)
		if !armed.Load() || !strings.HasPrefix(req.Group, f.app) || !hbFired.CompareAndSwap(false, true) {
			return nil, nil, false
		}
		firedAt.Store(time.Now().UnixNano())
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.Version = req.Version
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp, nil, true
	})
	// The zombie's offset commit is refused too (the broker forgot it).
	c.ControlKey(int16(kmsg.TxnOffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kr.(*kmsg.TxnOffsetCommitRequest)
		if !hbFired.Load() || !strings.HasPrefix(req.Group, f.app) || !tocFired.CompareAndSwap(false, true) {
			return nil, nil, false
		}
		return txnOffsetCommitAnswer(req, kerr.UnknownMemberID), nil, true
	})
	start := time.Now()
	go func() {
		// Arm once the first cycle holds its polled records.
		for f.committedTotal() == 0 && time.Since(start) < 30*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		// The next cycle polls these and holds them for CommitInterval.
		f.produce(records("w", 100)...)
		time.Sleep(time.Second)
		armed.Store(true)
	}()
	var recovered time.Duration
	err = f.run(p, func() bool {
		if !hbFired.Load() || f.committedTotal() != 400 {
			return false
		}
		recovered = time.Since(time.Unix(0, firedAt.Load()))
		return true
	}, 2*time.Minute)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["count"]
	t.Logf("heartbeat fault %v, offset commit fault %v; recovered %v after the fault; metrics %+v", hbFired.Load(), tocFired.Load(), recovered, m)
	// End stuck on the forced heartbeat waits for its context
	// (2*TransactionTimeout), fails its abort, and the stage restarts.
	if m.Restarts != 0 {
		t.Errorf("%d restarts after a lost heartbeat: End hung until its context expired", m.Restarts)
	}
	if recovered >= 2*txnTimeout {
		t.Errorf("the stage took %v after a lost heartbeat to commit again (End waited for its 2*TransactionTimeout context)", recovered)
	}
	f.checkGuarantee(nil)
}

// TestReviewUnconfirmedCommitAfterRealRebalance: the sequence of
// TestReviewUnconfirmedCommitAfterEmptyRevoke with a real rebalance: a second
// member joins the group (it gets no task: the only one stays with its
// owner), kgo ends the owner's session and calls OnPartitionsRevoked with
// nothing (cooperative), franz-go keeps its own flag clear, the stage sets
// sawRevoke; the next cycle commits, the broker commits it and answers
// UNKNOWN_SERVER_ERROR; the stage takes it for an abort.
func TestReviewUnconfirmedCommitAfterRealRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 50)...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(10))...)
	if err != nil {
		t.Fatal(err)
	}
	var stp atomic.Pointer[stage]
	p.hooks.afterCommit = func(st *stage) error { stp.Store(st); return nil }
	var joined atomic.Bool
	var joinedAt atomic.Int64
	// The first commit a second after the other member joined: the
	// rebalance (and its empty revoke) has happened by then.
	fired := committedButUnknownWhen(t, c, f.brokers, f.app, func(int) bool {
		return joined.Load() && stp.Load() != nil && time.Since(time.Unix(0, joinedAt.Load())) > time.Second
	}, nil)
	total := 50
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f.committedTotal() < 50 {
			time.Sleep(20 * time.Millisecond)
		}
		// A second member of the stage's group (same balancer). It
		// commits nothing, and leaves (a dynamic member: Close sends
		// LeaveGroup) once the fault fired, so that the restarted
		// stage gets its partition back.
		other := testbroker.NewClient(t, f.brokers, kgo.DisableAutoCommit(),
			kgo.ConsumerGroup(f.app+"-count"), kgo.ConsumeTopics(f.input),
			kgo.Balancers(balancerForReview()),
			kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(500*time.Millisecond))
		go func() {
			for {
				fs := other.PollFetches(context.Background())
				if fs.IsClientClosed() {
					return
				}
			}
		}()
		joinedAt.Store(time.Now().UnixNano())
		joined.Store(true)
		left := false
		for i := 0; i < 40; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if !left && fired.Load() > 0 {
				other.Close()
				left = true
			}
			f.produce(records("x", 10)...)
		}
	}()
	total += 400
	err = f.run(p, func() bool { return f.committedTotal() == int64(total) }, time.Minute)
	close(stop)
	<-done
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	m := p.Metrics().Stages["count"]
	t.Logf("faults %d; metrics %+v", fired.Load(), m)
	if fired.Load() != 1 {
		t.Fatalf("%d faults, want 1 (no commit after the empty revoke)", fired.Load())
	}
	if m.Restarts == 0 {
		t.Errorf("a committed EndTxn answered UNKNOWN_SERVER_ERROR after a rebalance was taken for an abort (no restart)")
	}
	f.checkGuarantee(nil)
}

func balancerForReview() kgo.GroupBalancer { return balancer.New() }

// TestReviewInputTopicDeletedIsNotFatal: FatalError's doc says an input topic
// that vanished stops the stage ("or an input topic vanished"), but fatal()
// classifies no UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID: gather logs
// the fetch error once and the stage idles (or restarts) forever.
func TestReviewInputTopicDeletedIsNotFatal(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 50)...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for f.committedTotal() < 50 {
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.DeleteTopic(f.input); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Logf("Run returned %v", err)
		if _, ok := errors.AsType[*FatalError](err); !ok {
			t.Errorf("Run returned %v, want a *FatalError", err)
		}
	case <-time.After(20 * time.Second):
		m := p.Metrics().Stages["count"]
		cancel()
		err := <-done
		t.Errorf("input topic deleted: Run still running 20s later (metrics %+v); then returned %v", m, err)
	}
}
