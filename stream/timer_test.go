package stream_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// fatalRecorder records Fatalf calls instead of stopping the test.
type fatalRecorder struct{ fatals []string }

func (*fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

// ticker counts records in a store and, on each timer, emits "<clock>
// <partition>" -> "<now> <count>" to "ticks" and resets the count.
func ticker(t *testing.T, clock stream.Clock, interval time.Duration, fail *bool) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	n := stream.DeclareStore(b, "n", codec.String{}, codec.Int64{})
	out := stream.DeclareOutput(b, "ticks", codec.String{}, codec.String{})
	stream.Process(src(b, "in", stream.Named("in")), func(h *stream.Handle, r stream.Record[string, string]) error {
		c, _, err := stream.Get(h, n, "n")
		if err != nil {
			return err
		}
		return stream.Put(h, n, "n", c+1)
	}, stream.Uses(n), stream.EmitsTo(out), stream.Named("count"),
		stream.Every(interval, clock, func(h *stream.Handle, now time.Time) error {
			c, _, err := stream.Get(h, n, "n")
			if err != nil {
				return err
			}
			if err := stream.Put(h, n, "n", 0); err != nil {
				return err
			}
			if err := stream.Emit(h, out, fmt.Sprintf("%d", h.Partition()), fmt.Sprintf("%s %d", now.Format("15:04:05"), c)); err != nil {
				return err
			}
			if fail != nil && *fail {
				return errors.New("timer failed")
			}
			return nil
		}))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func ticks(o *streamtest.Output[string, string]) string {
	var parts []string
	for _, r := range o.ReadAll() {
		parts = append(parts, r.Key+"="+r.Value)
	}
	return strings.Join(parts, " ")
}

func TestWallClockTimer(t *testing.T) {
	topo := ticker(t, stream.WallClock, time.Minute, nil)
	if !strings.Contains(topo.String(), "[every 1m0s on wall clock]") {
		t.Errorf("description:\n%v", topo)
	}
	if s := topology.Of(topo).Stages[0]; s.TimeStore != "" {
		t.Errorf("a wall-clock timer needs no stream time, got store %q", s.TimeStore)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(2)) // starts at 00:00:00
	in, out := strIn(d, "in"), strOut(d, "ticks")
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		in.Pipe(k, "x")
	}
	d.AdvanceWallClock(59 * time.Second)
	if got := ticks(out); got != "" {
		t.Fatalf("ticks %q before the minute", got)
	}
	d.AdvanceWallClock(time.Second) // 00:01:00: every task fires, once
	got := ticks(out)
	if !strings.HasPrefix(got, "0=00:01:00 ") || !strings.Contains(got, " 1=00:01:00 ") || strings.Count(got, "=") != 2 {
		t.Fatalf("ticks %q", got)
	}
	d.AdvanceWallClock(10 * time.Minute) // jumps over ten minutes: once per task
	if got, want := ticks(out), "0=00:11:00 0 1=00:11:00 0"; got != want {
		t.Fatalf("ticks %q, want %q", got, want)
	}
}

func TestStreamTimeTimer(t *testing.T) {
	d := streamtest.New(t, ticker(t, stream.StreamTime, 10*time.Second, nil))
	in, out := strIn(d, "in"), strOut(d, "ticks")
	in.PipeAt(at(1*time.Second), "k", "x") // the task's first record: sets stream time
	in.PipeAt(at(9*time.Second), "k", "x")
	if got := ticks(out); got != "" {
		t.Fatalf("ticks %q", got)
	}
	in.PipeAt(at(10*time.Second), "k", "x") // crosses 10 s: fires after the record, which it counts
	if got, want := ticks(out), "0=00:00:10 3"; got != want {
		t.Fatalf("ticks %q, want %q", got, want)
	}
	in.PipeAt(at(5*time.Second), "k", "x")  // out of order: stream time stays
	in.PipeAt(at(35*time.Second), "k", "x") // crosses 20 and 30: once
	if got, want := ticks(out), "0=00:00:35 2"; got != want {
		t.Fatalf("ticks %q, want %q", got, want)
	}
	d.AdvanceWallClock(time.Hour) // not its clock
	d.AdvanceStreamTime(at(40 * time.Second))
	if got, want := ticks(out), "0=00:00:40 0"; got != want {
		t.Fatalf("ticks %q, want %q", got, want)
	}
}

func TestTimerErrors(t *testing.T) {
	// A failing stream-time timer fails the record that moved stream time:
	// none of its effects happen, and stream time stays where it was.
	fail := true
	d := streamtest.New(t, ticker(t, stream.StreamTime, 10*time.Second, &fail))
	in, out := strIn(d, "in"), strOut(d, "ticks")
	in.PipeAt(at(1*time.Second), "k", "x")
	err := in.Send(streamtest.Record[string, string]{Key: "k", Value: "x", Timestamp: at(10 * time.Second)})
	if err == nil || !strings.Contains(err.Error(), "timer failed") || !strings.Contains(err.Error(), `Process "count"`) {
		t.Fatalf("err %v", err)
	}
	if st, _ := d.StreamTime("in", 0); !st.Equal(at(time.Second)) {
		t.Fatalf("stream time %v after a failed record", st)
	}
	fail = false
	in.PipeAt(at(10*time.Second), "k", "x")
	if got, want := ticks(out), "0=00:00:10 2"; got != want {
		t.Fatalf("ticks %q, want %q", got, want)
	}

	// A failing wall-clock timer fails AdvanceWallClock, and its effects
	// are discarded.
	fail = true
	ft := &fatalRecorder{}
	d = streamtest.New(ft, ticker(t, stream.WallClock, time.Minute, &fail))
	strIn(d, "in").Pipe("k", "x")
	d.AdvanceWallClock(time.Minute)
	if len(ft.fatals) != 1 || !strings.Contains(ft.fatals[0], "timer failed") {
		t.Fatalf("fatals %q", ft.fatals)
	}
	if got := ticks(strOut(d, "ticks")); got != "" {
		t.Fatalf("ticks %q from a failed timer", got)
	}
	if n, _ := streamtest.OpenStore(d, "n", codec.String{}, codec.Int64{}).Get("n"); n != 1 {
		t.Fatalf("count %d, want 1 (the failed timer's reset discarded)", n)
	}
}

func TestEveryBuildErrors(t *testing.T) {
	b := stream.NewBuilder()
	stream.Process(src(b, "in"), noop, stream.Every(0, stream.WallClock, func(*stream.Handle, time.Time) error { return nil }))
	stream.Process(src(b, "in2"), noop, stream.Every(time.Second, stream.StreamTime, nil))
	stream.Process(src(b, "in3"), noop, stream.Every(time.Second, stream.Clock(7), func(*stream.Handle, time.Time) error { return nil }))
	_, err := b.Build()
	if !errors.Is(err, stream.ErrInvalidArgument) || !errors.Is(err, stream.ErrNilFunc) || strings.Count(err.Error(), "\n") != 2 {
		t.Fatalf("Build: %v", err)
	}
}
