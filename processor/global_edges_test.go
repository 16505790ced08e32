package processor

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// Issue 13.5, global tables: a compacted topic with delete.retention.ms=0
// read as "unknown", so a copy that was down while compaction could remove
// tombstones resumed from its checkpoints. Now it is read again from the
// topic's start.
func TestGlobalTableDeleteRetentionZeroRebuilds(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "global-dr0")
	orders, users, out := app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 1, nil)
	testbroker.CreateTopic(t, brokers, users, 1, map[string]*string{"cleanup.policy": ptr("compact"), "delete.retention.ms": ptr("0")})
	testbroker.CreateTopic(t, brokers, out, 1, nil)
	topo := globalOrders(t, orders, users, out)
	produceGlobal(t, brokers, users, "ann=de", "bob=fr")
	opts := append(testOpts(t, brokers, app), StateDir(t.TempDir()))
	p := startProcessor(t, topo, opts...)
	produceGlobal(t, brokers, orders, "o1=ann")
	if got := waitRecords(t, brokers, out, 1, time.Minute); got < 1 {
		t.Fatalf("no output (Run: %v)", p.stop())
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}

	produceGlobal(t, brokers, users, "ann=<nil>")
	p = startProcessor(t, topo, opts...)
	produceGlobal(t, brokers, orders, "o2=ann")
	if got := waitRecords(t, brokers, out, 2, time.Minute); got < 2 {
		t.Fatalf("output has %d of 2 records (Run: %v)", got, p.stop())
	}
	m := p.Metrics().Global["users"]
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if m.Rebuilds != 1 {
		t.Errorf("global metrics of the restart: %+v, want 1 rebuild (delete.retention.ms=0 trusts no checkpoint)", m)
	}
}

// Issue 14.3, global tables: a following copy stamped each checkpoint with
// the time of its write, although the records past it may be older (a
// lagging follower, a bootstrap flush). It now carries the time the copy
// was last seen caught up with the partition's high watermark.
func TestGlobalFollowerCheckpointKeepsCaughtUpTime(t *testing.T) {
	kf := testbroker.NewKfake(t)
	brokers := kf.ListenAddrs()
	app := testbroker.Unique(t, "global-since")
	orders, users, out := app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 1, nil)
	testbroker.CreateTopic(t, brokers, users, 1, map[string]*string{"cleanup.policy": ptr("compact")})
	testbroker.CreateTopic(t, brokers, out, 1, nil)
	produceGlobal(t, brokers, users, "ann=de")

	p, err := New(globalOrders(t, orders, users, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := t0
	p.now = func() time.Time { return clock } // only this goroutine reads it
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, st := range p.stages {
		st.db = db
	}
	adm := testbroker.Admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.prepareTopics(ctx, adm); err != nil {
		t.Fatal(err)
	}
	g := p.globals[0]
	if err := g.bootstrap(ctx, adm, db); err != nil {
		t.Fatal(err)
	}
	defer p.closeGlobals()
	written := func() (int64, time.Time) {
		t.Helper()
		cp, found, err := db.Checkpoint(state.GlobalCheckpoint(g.name, 0))
		if err != nil || !found {
			t.Fatalf("checkpoint: %v, %v", found, err)
		}
		return cp.Stores[g.store].Next, cp.Written
	}
	if _, at := written(); !at.Equal(t0) {
		t.Fatalf("bootstrap checkpoint written at %v, want %v", at, t0)
	}

	// Three hours later the copy applies records written since.
	produceGlobal(t, brokers, users, "bob=fr", "ann=<nil>")
	clock = t0.Add(3 * time.Hour)
	for next, _ := written(); next < 3; next, _ = written() {
		if _, err := g.rp.apply(g.rp.cl.PollFetches(ctx)); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("the copy did not read the new records")
		}
	}
	if next, at := written(); !at.Equal(t0) {
		t.Errorf("checkpoint at offset %d written at %v, want %v (when the copy was last caught up)", next, at, t0)
	}

	// Caught up at the next refresh: the checkpoint's time moves on.
	clock = t0.Add(4 * time.Hour)
	if err := g.refresh(ctx, adm); err != nil {
		t.Fatal(err)
	}
	if next, at := written(); !at.Equal(clock) {
		t.Errorf("checkpoint at offset %d after a refresh that found the copy caught up: written at %v, want %v", next, at, clock)
	}
}

// A global table's bootstrap never waits forever: fetches that never
// answer fail it (and Run) after restoreStall.
func TestGlobalBootstrapFailsWhenStalled(t *testing.T) {
	kf := testbroker.NewKfake(t)
	brokers := kf.ListenAddrs()
	app := testbroker.Unique(t, "global-stall")
	orders, users, out := app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 1, nil)
	testbroker.CreateTopic(t, brokers, users, 1, map[string]*string{"cleanup.policy": ptr("compact")})
	testbroker.CreateTopic(t, brokers, out, 1, nil)
	produceGlobal(t, brokers, users, "ann=de")
	defer func(d time.Duration) { restoreStall = d }(restoreStall)
	restoreStall = time.Second
	kf.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		kf.SleepControl(func() { time.Sleep(3 * time.Second) })
		return nil, nil, false
	})
	p, err := New(globalOrders(t, orders, users, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err = p.Run(ctx)
	if ctx.Err() != nil || err == nil || !strings.Contains(err.Error(), "received no record") {
		t.Fatalf("Run = %v after %v, want the bootstrap's stall error", err, time.Since(start))
	}
}

// A following copy whose unread records are deleted (retention,
// DeleteRecords) used to jump to the new log start silently, keeping keys
// whose tombstones were among the deleted records. It now stops with an
// error saying to start again (the next bootstrap rebuilds).
func TestGlobalFollowerStopsWhenUnreadRecordsAreDeleted(t *testing.T) {
	kf := testbroker.NewKfake(t)
	brokers := kf.ListenAddrs()
	app := testbroker.Unique(t, "global-lost")
	orders, users, out := app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 1, nil)
	testbroker.CreateTopic(t, brokers, users, 1, map[string]*string{"cleanup.policy": ptr("compact")})
	testbroker.CreateTopic(t, brokers, out, 1, nil)
	produceGlobal(t, brokers, users, "ann=de")

	p, err := New(globalOrders(t, orders, users, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, st := range p.stages {
		st.db = db
	}
	adm := testbroker.Admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.prepareTopics(ctx, adm); err != nil {
		t.Fatal(err)
	}
	g := p.globals[0]
	if err := g.bootstrap(ctx, adm, db); err != nil {
		t.Fatal(err)
	}
	defer p.closeGlobals()

	// While the copy does not fetch, ann is deleted and the records
	// up to the tombstone are deleted too. A fetch the copy sent before
	// the pause may still be waiting at the broker and would bring back
	// records produced now: produce one record first, to end that fetch,
	// and poll while paused, which drops what it brought and keeps the
	// copy's position (franz-go sends no fetch for a paused partition).
	g.rp.cl.PauseFetchPartitions(map[string][]int32{users: {0}})
	produceGlobal(t, brokers, users, "cat=it")
	for range 3 {
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		g.rp.cl.PollFetches(pctx)
		pcancel()
	}
	produceGlobal(t, brokers, users, "ann=<nil>", "bob=fr")
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: users, Partition: 0, At: 3})
	dr, err := adm.DeleteRecords(ctx, os)
	if err == nil {
		err = dr.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	g.rp.cl.ResumeFetchPartitions(map[string][]int32{users: {0}})

	fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
	defer fcancel()
	err = g.follow(fctx)
	if err == nil || !strings.Contains(err.Error(), "start the processor again") {
		t.Fatalf("follow = %v, want an error saying records it had not read were deleted", err)
	}
}
