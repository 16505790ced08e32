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
