package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// idlePoller has nothing to hand over: each poll waits until its context
// ends, as a client caught up with its input does.
type idlePoller struct{}

func (idlePoller) PollRecords(ctx context.Context, _ int) kgo.Fetches {
	<-ctx.Done()
	return nil
}

// TestGatherDeadline: a stage caught up with live input ends its transaction
// one commit interval after the previous gather stopped (the previous
// transaction's ending counts toward the interval); a stage with a backlog,
// or on its first cycle, gathers for a whole interval from now; a caught-up
// stage gathers at least half an interval (when the previous transaction
// took long to end, back-to-back tiny transactions would add to the load).
func TestGatherDeadline(t *testing.T) {
	st := &stage{name: "s", cfg: stageCfg{commitInterval: 200 * time.Millisecond, maxRecords: 50000}}
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

	if got, want := st.gatherDeadline(t0), t0.Add(200*time.Millisecond); !got.Equal(want) {
		t.Errorf("first cycle: deadline %v, want now + interval %v", got, want)
	}
	st.pace.ended, st.pace.caughtUp = t0, true
	if got, want := st.gatherDeadline(t0.Add(50*time.Millisecond)), t0.Add(200*time.Millisecond); !got.Equal(want) {
		t.Errorf("caught up, previous gather ended 50ms ago: deadline %v, want previous end + interval %v", got, want)
	}
	if got, want := st.gatherDeadline(t0.Add(300*time.Millisecond)), t0.Add(400*time.Millisecond); !got.Equal(want) {
		t.Errorf("caught up, ending outlasted the interval: deadline %v, want now + half the interval = %v", got, want)
	}
	if got, want := st.gatherDeadline(t0.Add(150*time.Millisecond)), t0.Add(250*time.Millisecond); !got.Equal(want) {
		t.Errorf("caught up, previous gather ended 150ms ago: deadline %v, want at least now + half the interval %v", got, want)
	}
	st.pace.caughtUp = false
	if got, want := st.gatherDeadline(t0.Add(150*time.Millisecond)), t0.Add(350*time.Millisecond); !got.Equal(want) {
		t.Errorf("backlog: deadline %v, want now + interval %v", got, want)
	}
}

// TestGatherTellsBacklogFromCaughtUp: gather marks the stage caught up only
// when its polls waited for records, and counts that wait in IdleTime.
func TestGatherTellsBacklogFromCaughtUp(t *testing.T) {
	st := &stage{name: "s", cfg: stageCfg{commitInterval: 50 * time.Millisecond, maxRecords: 20}}
	process := func([]*kgo.Record) error { return nil }

	n, err := st.gather(context.Background(), &backlogPoller{}, process)
	if err != nil || n != 20 {
		t.Fatalf("backlog gather: %d records, %v; want 20 (the record cap; the poller hands over as many as asked), nil", n, err)
	}
	if st.pace.caughtUp {
		t.Errorf("a gather whose every poll found a record at once counts as caught up")
	}
	if st.pace.ended.IsZero() {
		t.Errorf("gather did not note when it ended")
	}
	before := time.Duration(st.metrics.idleNanos.Load())
	n, err = st.gather(context.Background(), idlePoller{}, process)
	if err != nil || n != 0 {
		t.Fatalf("idle gather: %d records, %v; want 0, nil", n, err)
	}
	if !st.pace.caughtUp {
		t.Errorf("a gather that waited its whole interval for records does not count as caught up")
	}
	if idle := time.Duration(st.metrics.idleNanos.Load()) - before; idle < 40*time.Millisecond {
		t.Errorf("IdleTime grew by %v over a gather that waited its whole 50ms interval", idle)
	}
}

// burstPoller hands over burst records on its first poll, then has nothing:
// the input of a stage fed by one upstream commit.
type burstPoller struct {
	burst int
	polls int
}

func (b *burstPoller) PollRecords(ctx context.Context, _ int) kgo.Fetches {
	b.polls++
	if b.polls > 1 {
		<-ctx.Done()
		return nil
	}
	recs := make([]*kgo.Record, b.burst)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "in"}
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{Records: recs}}}}}}
}

// tricklePoller hands over one record per poll after a short pause, however
// short the poll's deadline: input that never goes quiet.
type tricklePoller struct{}

func (tricklePoller) PollRecords(context.Context, int) kgo.Fetches {
	time.Sleep(200 * time.Microsecond)
	recs := []*kgo.Record{{Topic: "in"}}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{Records: recs}}}}}}
}

// TestGatherEndsWhenABurstIsDone: a caught-up stage that processed a burst
// of input and then polls nothing for quietWait ends its gather at the
// floor (quietAfter) instead of the deadline; a stage with a backlog, a
// stage whose previous gather ended moments ago, and a stage whose input
// never goes quiet do not. Only lower bounds and a margin of a whole second
// are timed, so that a loaded machine cannot fail the test.
func TestGatherEndsWhenABurstIsDone(t *testing.T) {
	process := func([]*kgo.Record) error { return nil }
	gather := func(st *stage, pl poller) (int, time.Duration) {
		t.Helper()
		start := time.Now()
		n, err := st.gather(context.Background(), pl, process)
		if err != nil {
			t.Fatal(err)
		}
		return n, time.Since(start)
	}
	const iv = 4 * time.Second

	// Caught up, the previous gather ended an interval ago: the floor is
	// a quarter interval from now, the deadline half an interval.
	st := &stage{name: "s", cfg: stageCfg{commitInterval: iv, maxRecords: 50000}}
	st.pace.caughtUp, st.pace.ended = true, time.Now().Add(-iv)
	n, took := gather(st, &burstPoller{burst: 7})
	if n != 7 {
		t.Fatalf("caught up: gathered %d records, want the burst's 7", n)
	}
	if took < iv/4 || took > iv/4+time.Second {
		t.Errorf("caught up, burst done: gather took %v, want about a quarter interval (%v): the floor, then quiet input ends it", took, iv/4)
	}
	if !st.pace.caughtUp {
		t.Errorf("a gather that ended on quiet input does not count as caught up")
	}

	// Backlog mode (the previous gather never waited): the whole interval.
	const short = 400 * time.Millisecond
	st = &stage{name: "s", cfg: stageCfg{commitInterval: short, maxRecords: 50000}}
	st.pace.ended = time.Now()
	if _, took := gather(st, &burstPoller{burst: 3}); took < short {
		t.Errorf("backlog mode: gather took %v, want the whole interval %v", took, short)
	}

	// Caught up, the previous gather stopped just now: not before half an
	// interval after it, however quiet the input.
	st = &stage{name: "s", cfg: stageCfg{commitInterval: short, maxRecords: 50000}}
	st.pace.caughtUp, st.pace.ended = true, time.Now()
	if _, took := gather(st, &burstPoller{burst: 3}); took < short/2 {
		t.Errorf("caught up, previous gather just stopped: gather took %v, want at least half the interval %v", took, short/2)
	}

	// Caught up, input never quiet: until the deadline (half an interval
	// from now, the previous gather having stopped a whole one ago).
	st = &stage{name: "s", cfg: stageCfg{commitInterval: short, maxRecords: 1 << 30}}
	st.pace.caughtUp, st.pace.ended = true, time.Now().Add(-short)
	if _, took := gather(st, tricklePoller{}); took < short/2 {
		t.Errorf("caught up, steady input: gather took %v, want the deadline's %v", took, short/2)
	}
}

// TestCaughtUpIsRelativeToTheGather: polls that waited a tenth of the gather
// or more make a caught-up stage; a few milliseconds of waiting in a long
// gather (a nearly saturated stage) do not.
func TestCaughtUpIsRelativeToTheGather(t *testing.T) {
	for _, c := range []struct {
		idle, took time.Duration
		want       bool
	}{
		{0, 100 * time.Millisecond, false},
		{3 * time.Millisecond, 100 * time.Millisecond, false},
		{9 * time.Millisecond, 100 * time.Millisecond, false},
		{10 * time.Millisecond, 100 * time.Millisecond, true},
		{60 * time.Millisecond, 100 * time.Millisecond, true},
		{500 * time.Microsecond, 2 * time.Millisecond, false},
		{time.Millisecond, 5 * time.Millisecond, true},
	} {
		if got := caughtUp(c.idle, c.took); got != c.want {
			t.Errorf("caughtUp(idle %v, gather %v) = %v, want %v", c.idle, c.took, got, c.want)
		}
	}
}
