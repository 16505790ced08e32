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

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// at returns t0 + d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// secs formats a time as seconds since t0, with milliseconds when needed.
func secs(t time.Time) string {
	d := t.Sub(t0)
	if d%time.Second == 0 {
		return fmt.Sprint(int64(d / time.Second))
	}
	return fmt.Sprintf("%.3f", d.Seconds())
}

// windowKey renders a windowed key as "key@start-end" in seconds since t0.
func windowKey(w stream.Windowed[string]) string {
	return fmt.Sprintf("%s@%s-%s", w.Key, secs(w.Window.Start), secs(w.Window.End))
}

// windowedTo writes a windowed table's updates (deletions as "-") to topic
// as "key@start-end" -> value.
func windowedTo[V any](t stream.Table[stream.Windowed[string], V], topic string) {
	stream.To(stream.Map(t.Changes(), func(w stream.Windowed[string], c stream.Change[V]) (string, string) {
		if !c.HasNew {
			return windowKey(w), "-"
		}
		return windowKey(w), fmt.Sprint(c.New)
	}), topic, codec.String{}, codec.String{})
}

// windowCount builds clicks -> group by key -> windows -> count, with the
// count's changes in "counts" and, when suppress is set, its final values
// in "final".
func windowCount(t *testing.T, w stream.Windows, suppress bool, opts ...streamtest.Opt) (*streamtest.Driver, *stream.Topology) {
	t.Helper()
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	counts := stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(clicks, codec.String{}, codec.String{}), w),
		stream.Named("counts"))
	windowedTo(counts, "counts")
	if suppress {
		windowedTo(stream.SuppressUntilWindowCloses(counts, stream.Named("final-counts")), "final")
	}
	return drive(t, b, opts...)
}

func wantLate(t *testing.T, err error) {
	t.Helper()
	var le *stream.LateRecordError
	if !errors.Is(err, stream.ErrLateRecord) || !errors.As(err, &le) {
		t.Fatalf("err %v, want a late record", err)
	}
}

func TestTumblingWindowEdges(t *testing.T) {
	d, topo := windowCount(t, stream.Tumbling(10*time.Second).Grace(5*time.Second), false)
	if s := topology.Of(topo).Stages[0]; s.TimeStore != "clicks-stream-time" || len(s.Stores) != 2 {
		t.Fatalf("stage stores %+v, time store %q", s.Stores, s.TimeStore)
	}
	if !strings.Contains(topo.String(), `WindowedCount "counts" [tumbling 10s, grace 5s; store counts]`) {
		t.Errorf("description:\n%v", topo)
	}
	in, out := strIn(d, "clicks"), strOut(d, "counts")
	in.PipeAt(at(0), "a", "p")                               // the first instant of [0,10)
	in.PipeAt(at(10*time.Second-time.Millisecond), "a", "p") // its last instant
	in.PipeAt(at(10*time.Second), "a", "p")                  // exactly at the boundary: the next window
	wantKVs(t, out, "a@0-10=1 a@0-10=2 a@10-20=1")

	// Stream time 14.999s: [0,10) closes at 10 + 5 = 15, so it still
	// takes records, up to the last millisecond of its grace period.
	in.PipeAt(at(15*time.Second-time.Millisecond), "b", "p")
	in.PipeAt(at(3*time.Second), "a", "p")
	wantKVs(t, out, "b@10-20=1 a@0-10=3")
	if st, ok := d.StreamTime("clicks", 0); !ok || !st.Equal(at(15*time.Second-time.Millisecond)) {
		t.Fatalf("stream time %v %v", st, ok)
	}
	// Stream time 15s: [0,10) is closed; a record for it is late and goes
	// to the error policy, with no effect.
	in.PipeAt(at(15*time.Second), "b", "p")
	err := in.Send(streamtest.Record[string, string]{Key: "a", Value: "p", Timestamp: at(9 * time.Second)})
	wantLate(t, err)
	wantKVs(t, out, "b@10-20=2")
	// Out of order but within grace: fine.
	in.PipeAt(at(11*time.Second), "a", "p")
	wantKVs(t, out, "a@10-20=2")
}

func TestHoppingWindows(t *testing.T) {
	d, _ := windowCount(t, stream.Hopping(10*time.Second, 5*time.Second), false)
	in, out := strIn(d, "clicks"), strOut(d, "counts")
	in.PipeAt(at(7*time.Second), "a", "p")  // in [0,10) and [5,15)
	in.PipeAt(at(10*time.Second), "a", "p") // in [5,15) and [10,20); [0,10) closes
	wantKVs(t, out, "a@0-10=1 a@5-15=1 a@5-15=2 a@10-20=1")
	// 9s: [0,10) is closed (no grace), [5,15) is open: the record counts
	// in the open one and is not late.
	in.PipeAt(at(9*time.Second), "a", "p")
	wantKVs(t, out, "a@5-15=3")
	in.PipeAt(at(16*time.Second), "a", "p") // closes [5,15)
	err := in.Send(streamtest.Record[string, string]{Key: "a", Value: "p", Timestamp: at(9 * time.Second)})
	wantLate(t, err)
}

func TestWindowRetention(t *testing.T) {
	raw := func(d *streamtest.Driver) (data, index int) {
		for _, e := range streamtest.OpenStore(d, "counts", codec.Bytes{}, codec.Bytes{}).All() {
			switch e.Key[0] {
			case 0:
				data++
			case 1:
				index++
			}
		}
		return data, index
	}
	// Default retention: a window is deleted as it closes.
	d, _ := windowCount(t, stream.Tumbling(10*time.Second).Grace(2*time.Second), false)
	in := strIn(d, "clicks")
	in.PipeAt(at(1*time.Second), "a", "p")
	in.PipeAt(at(2*time.Second), "b", "p")
	if data, index := raw(d); data != 2 || index != 2 {
		t.Fatalf("%d windows, %d index entries; want 2, 2", data, index)
	}
	in.PipeAt(at(12*time.Second-time.Millisecond), "c", "p")
	if data, _ := raw(d); data != 3 {
		t.Fatalf("%d windows before close, want 3", data)
	}
	in.PipeAt(at(12*time.Second), "c", "p") // [0,10) closes at 12
	if data, index := raw(d); data != 1 || index != 1 {
		t.Fatalf("%d windows, %d index entries after close; want 1, 1 (c@10-20)", data, index)
	}

	// A longer retention keeps closed windows, then deletes them.
	d, _ = windowCount(t, stream.Tumbling(10*time.Second).Retention(time.Minute), false)
	in = strIn(d, "clicks")
	in.PipeAt(at(1*time.Second), "a", "p")
	in.PipeAt(at(30*time.Second), "a", "p")
	if data, _ := raw(d); data != 2 {
		t.Fatalf("%d windows, want 2 (retained)", data)
	}
	d.AdvanceStreamTime(at(time.Minute))
	if data, _ := raw(d); data != 1 {
		t.Fatalf("%d windows after retention, want 1", data)
	}

	// A retention shorter than size + grace cannot work.
	b := stream.NewBuilder()
	stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{}),
		stream.Tumbling(time.Minute).Grace(time.Second).Retention(time.Minute)))
	if _, err := b.Build(); !errors.Is(err, stream.ErrInvalidArgument) {
		t.Fatalf("Build: %v", err)
	}
}

func TestSuppressUntilWindowCloses(t *testing.T) {
	d, topo := windowCount(t, stream.Tumbling(10*time.Second).Grace(5*time.Second), true, streamtest.Partitions(3))
	if s := topology.Of(topo).Stages[0]; len(s.Stores) != 3 {
		t.Fatalf("stores %+v, want counts, final-counts and the stream time", s.Stores)
	}
	in, final := strIn(d, "clicks"), strOut(d, "final")
	// Keys spread over 3 tasks; each task has its own stream time.
	for _, k := range []string{"a", "b", "c", "d"} {
		in.PipeAt(at(1*time.Second), k, "p")
		in.PipeAt(at(2*time.Second), k, "p")
	}
	in.PipeAt(at(12*time.Second), "a", "p")
	wantKVs(t, final, "") // nothing closed: [0,10) closes at 15
	in.PipeAt(at(15*time.Second-time.Millisecond), "a", "p")
	wantKVs(t, final, "")
	in.PipeAt(at(15*time.Second), "a", "p") // stream time of a's task reaches 15
	got := kvList(final.ReadKeyValues())
	// a's task released its [0,10) windows, once, with their final counts;
	// the other keys' tasks, if different, did not.
	if !strings.Contains(got, "a@0-10=2") || strings.Count(got, "a@0-10") != 1 {
		t.Fatalf("final %q", got)
	}
	d.AdvanceStreamTime(at(15 * time.Second))
	got += " " + kvList(final.ReadKeyValues())
	for _, k := range []string{"a", "b", "c", "d"} {
		if strings.Count(got, k+"@0-10=2") != 1 {
			t.Fatalf("final %q: want %s@0-10=2 once", got, k)
		}
	}
	d.AdvanceStreamTime(at(time.Minute))
	wantKVs(t, final, "a@10-20=3")
	d.AdvanceStreamTime(at(2 * time.Minute))
	wantKVs(t, final, "")
	// The buffer is empty, and so is the windowed store.
	if n := streamtest.OpenStore(d, "final-counts", codec.Bytes{}, codec.Bytes{}).Len(); n != 0 {
		t.Fatalf("%d buffered entries left", n)
	}
	if n := streamtest.OpenStore(d, "counts", codec.Bytes{}, codec.Bytes{}).Len(); n != 0 {
		t.Fatalf("%d windowed entries left", n)
	}
}

func TestSessionWindows(t *testing.T) {
	d, _ := windowCount(t, stream.Sessions(5*time.Second).Grace(4*time.Second), true)
	in, out, final := strIn(d, "clicks"), strOut(d, "counts"), strOut(d, "final")
	in.PipeAt(at(0), "a", "p")
	in.PipeAt(at(3*time.Second), "a", "p") // within the gap: extends
	wantKVs(t, out, "a@0-0=1 a@0-0=- a@0-3=2")
	in.PipeAt(at(10*time.Second), "a", "p") // 7s after: a new session
	wantKVs(t, out, "a@10-10=1")
	in.PipeAt(at(6500*time.Millisecond), "a", "p") // bridges [0,3] and [10,10]: merges
	wantKVs(t, out, "a@0-3=- a@10-10=- a@0-10=4")
	in.PipeAt(at(6*time.Second), "a", "p") // inside: updates in place
	wantKVs(t, out, "a@0-10=5")
	wantKVs(t, final, "")
	// [0,10] would close when stream time passes 10 + 5 (gap) + 4 (grace).
	in.PipeAt(at(17*time.Second), "b", "p")
	wantKVs(t, final, "")
	// At 17s a record at 15s is within the grace and the gap: it extends
	// a's session, which now closes after 15 + 5 + 4 = 24s.
	in.PipeAt(at(15*time.Second), "a", "p")
	wantKVs(t, out, "b@17-17=1 a@0-10=- a@0-15=6")
	in.PipeAt(at(24*time.Second), "x", "p")
	wantKVs(t, final, "")
	in.PipeAt(at(24*time.Second+time.Millisecond), "y", "p")
	wantKVs(t, final, "a@0-15=6")
	// Late: a session of its own that would have closed already, its
	// timestamp more than gap + grace (9s) behind stream time (24.001s).
	err := in.Send(streamtest.Record[string, string]{Key: "c", Value: "p", Timestamp: at(15 * time.Second)})
	wantLate(t, err)
	in.PipeAt(at(15*time.Second+time.Millisecond), "c", "p") // the limit: closes after 24.001s
	in.PipeAt(at(20*time.Second), "d", "p")                  // more than the grace behind, still open
	d.AdvanceStreamTime(at(time.Hour))
	wantKVs(t, final, "c@15.001-15.001=1 b@17-17=1 d@20-20=1 x@24-24=1 y@24.001-24.001=1")
}

// TestSessionLateOnlyWhenClosed checks Kafka Streams' rule for sessions: a
// record is late only when the session it would start, extend or merge into
// has closed (its end + gap + grace is before stream time), not when its
// own timestamp is more than the grace behind stream time.
func TestSessionLateOnlyWhenClosed(t *testing.T) {
	d, _ := windowCount(t, stream.Sessions(5*time.Second), true) // grace 0
	in, out, final := strIn(d, "clicks"), strOut(d, "counts"), strOut(d, "final")
	in.PipeAt(at(100*time.Second), "a", "p")
	in.PipeAt(at(105*time.Second), "a", "p") // exactly one gap later: the same session
	in.PipeAt(at(108*time.Second), "b", "p") // stream time 108s
	wantKVs(t, out, "a@100-100=1 a@100-100=- a@100-105=2 b@108-108=1")
	// 5s behind stream time with no grace, but inside a's open session
	// (it closes after 105 + 5 = 110s): it counts.
	if err := in.Send(streamtest.Record[string, string]{Key: "a", Value: "p", Timestamp: at(103 * time.Second)}); err != nil {
		t.Fatalf("a record inside an open session: %v", err)
	}
	wantKVs(t, out, "a@100-105=3")
	// Out of order by 4s, within the gap of nothing: a session of its own,
	// open until 104 + 5 = 109s >= 108s.
	in.PipeAt(at(104*time.Second), "c", "p")
	wantKVs(t, out, "c@104-104=1")
	// 102.999 + 5 < 108: its session would be closed already.
	err := in.Send(streamtest.Record[string, string]{Key: "e", Value: "p", Timestamp: at(103*time.Second - time.Millisecond)})
	wantLate(t, err)
	in.PipeAt(at(110*time.Second), "b", "p") // past 109s: c's session closes
	wantKVs(t, final, "c@104-104=1")
	in.PipeAt(at(110*time.Second+time.Millisecond), "b", "p") // past 110s: a's
	wantKVs(t, final, "a@100-105=3")
	// a's session is closed: a record that would extend it is late.
	err = in.Send(streamtest.Record[string, string]{Key: "a", Value: "p", Timestamp: at(105 * time.Second)})
	wantLate(t, err)
}

func TestSessionAggregate(t *testing.T) {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	g := stream.WindowedBy(stream.GroupByKey(clicks, codec.String{}, codec.String{}), stream.Sessions(time.Minute).Grace(time.Minute))
	pages := stream.SessionAggregate(g, func() string { return "" },
		func(_ string, p, acc string) string { return acc + p },
		func(_ string, a, b string) string { return a + "|" + b },
		codec.String{}, stream.Named("pages"))
	windowedTo(pages, "pages")
	d, _ := drive(t, b)
	in, out := strIn(d, "clicks"), strOut(d, "pages")
	in.PipeAt(at(0), "u", "a")
	in.PipeAt(at(2*time.Minute), "u", "b")
	in.PipeAt(at(time.Minute), "u", "c")
	wantKVs(t, out, "u@0-0=a u@120-120=b u@0-0=- u@120-120=- u@0-120=a|bc")

	// SessionAggregate wants sessions; WindowedAggregate wants time windows.
	b = stream.NewBuilder()
	gt := stream.WindowedBy(stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{}), stream.Tumbling(time.Minute))
	stream.SessionAggregate(gt, func() string { return "" }, func(_, v, a string) string { return a + v },
		func(_, a, b string) string { return a + b }, codec.String{})
	gs := stream.WindowedBy(stream.GroupByKey(src(b, "in2"), codec.String{}, codec.String{}), stream.Sessions(time.Minute))
	stream.WindowedAggregate(gs, func() string { return "" }, func(_, v, a string) string { return a + v }, codec.String{})
	_, err := b.Build()
	if !errors.Is(err, stream.ErrInvalidArgument) || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("Build: %v", err)
	}
}

func TestWindowedReduceAndAggregate(t *testing.T) {
	b := stream.NewBuilder()
	nums := stream.Source(b, "nums", codec.String{}, codec.Int64{}, stream.Named("nums"))
	g := stream.WindowedBy(stream.GroupByKey(nums, codec.String{}, codec.Int64{}), stream.Tumbling(time.Minute))
	maxes := stream.WindowedReduce(g, func(a, v int64) int64 { return max(a, v) }, stream.Named("max"))
	sums := stream.WindowedAggregate(g, func() string { return "" },
		func(_ string, v int64, acc string) string { return acc + fmt.Sprint(v) }, codec.String{}, stream.Named("concat"))
	windowedTo(maxes, "maxes")
	windowedTo(sums, "concat")
	d, _ := drive(t, b)
	in := streamtest.NewInput(d, "nums", codec.String{}, codec.Int64{})
	in.PipeAt(at(time.Second), "k", 3)
	in.PipeAt(at(2*time.Second), "k", 1)
	in.PipeAt(at(61*time.Second), "k", 2)
	wantKVs(t, strOut(d, "maxes"), "k@0-60=3 k@0-60=3 k@60-120=2")
	wantKVs(t, strOut(d, "concat"), "k@0-60=3 k@0-60=31 k@60-120=2")
}

func TestExtractTimestamp(t *testing.T) {
	type event struct {
		At   int64 // seconds since t0
		User string
	}
	b := stream.NewBuilder()
	events := stream.Source(b, "events", codec.String{}, codec.JSON[event]{}, stream.Named("events"),
		stream.ExtractTimestamp(func(_ string, e event, _ time.Time) time.Time { return at(time.Duration(e.At) * time.Second) }))
	g := stream.GroupBy(events, func(_ string, e event) string { return e.User }, codec.String{}, codec.JSON[event]{}, stream.Named("by-user"))
	windowedTo(stream.WindowedCount(stream.WindowedBy(g, stream.Tumbling(10*time.Second)), stream.Named("counts")), "counts")
	d, topo := drive(t, b)
	if !strings.Contains(topo.String(), "[timestamps extracted]") {
		t.Errorf("description:\n%v", topo)
	}
	in := streamtest.NewInput(d, "events", codec.String{}, codec.JSON[event]{})
	// The Kafka timestamps say otherwise; the extracted ones decide, and
	// carry through the repartition topic.
	in.PipeAt(at(time.Hour), "", event{At: 1, User: "a"})
	in.PipeAt(at(0), "", event{At: 12, User: "a"})
	wantKVs(t, strOut(d, "counts"), "a@0-10=1 a@10-20=1")
	for _, m := range d.Messages("streamtest-by-user-repartition") {
		if m.Timestamp.After(at(time.Minute)) {
			t.Errorf("repartitioned record has timestamp %v, want the extracted one", m.Timestamp)
		}
	}

	// The extractor's types must be the Source's.
	b = stream.NewBuilder()
	stream.Source(b, "in", codec.String{}, codec.String{},
		stream.ExtractTimestamp(func(_ string, _ int64, ts time.Time) time.Time { return ts }))
	if _, err := b.Build(); !errors.Is(err, stream.ErrInvalidArgument) {
		t.Fatalf("Build: %v", err)
	}
}

func TestSuppressNeedsWindows(t *testing.T) {
	b := stream.NewBuilder()
	tbl := stream.SourceTable(b, "windowed", stream.WindowedCodec[string](codec.String{}), codec.Int64{})
	stream.SuppressUntilWindowCloses(tbl)
	if _, err := b.Build(); !errors.Is(err, stream.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a windowed table") {
		t.Fatalf("Build: %v", err)
	}
}
