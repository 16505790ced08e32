package streamtest_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// enrichTopology joins the stream "views" with the table "users".
func enrichTopology(t *testing.T) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	joined := stream.Join(views, users, func(_, page, country string) string { return page + "@" + country }, stream.Named("enrich"))
	stream.To(joined, "enriched", codec.String{}, codec.String{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// Within a task the driver processes the waiting record with the lowest
// timestamp across the task's input topics, as the runtime does (Kafka
// Streams too): a table record piped after a stream record but timestamped
// earlier is in the table when the stream record is joined. Ties go to the
// record piped first.
func TestBatchLowestTimestampFirst(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name          string
		viewAt, useAt time.Time
		want          []string
	}{
		{"table earlier", t0.Add(10 * time.Second), t0.Add(5 * time.Second), []string{"/a@de"}},
		{"tie: pipe order", t0, t0, nil},
		{"table later", t0, t0.Add(time.Second), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := streamtest.New(t, enrichTopology(t), streamtest.Partitions(2))
			views := streamtest.NewInput(d, "views", codec.String{}, codec.String{})
			users := streamtest.NewInput(d, "users", codec.String{}, codec.String{})
			out := streamtest.NewOutput(d, "enriched", codec.String{}, codec.String{})
			err := d.Batch(func() {
				views.PipeAt(tc.viewAt, "ann", "/a")
				users.PipeAt(tc.useAt, "ann", "de")
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := out.ReadValues(); !slices.Equal(got, tc.want) {
				t.Errorf("joined %q, want %q", got, tc.want)
			}
		})
	}

	// Outside a Batch each record is processed when piped, as when the
	// records reach the runtime one cycle apart: the view finds no user.
	d := streamtest.New(t, enrichTopology(t), streamtest.Partitions(2))
	views := streamtest.NewInput(d, "views", codec.String{}, codec.String{})
	users := streamtest.NewInput(d, "users", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "enriched", codec.String{}, codec.String{})
	views.PipeAt(t0.Add(10*time.Second), "ann", "/a")
	users.PipeAt(t0.Add(5*time.Second), "ann", "de")
	if got := out.ReadValues(); len(got) != 0 {
		t.Errorf("one by one: joined %q, want nothing", got)
	}
}

// keyIn returns a key that Partition puts in partition p of n.
func keyIn(t *testing.T, p int32, n int) string {
	t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("k%d", i)
		if streamtest.Partition([]byte(k), n) == p {
			return k
		}
	}
	t.Fatalf("no key for partition %d of %d", p, n)
	return ""
}

// A repartitioned stream reaches the downstream task in whole batches per
// upstream task (each task's records of a cycle, committed together), as in
// the runtime, not record by record: stream time downstream jumps to the
// first batch's latest timestamp, and a record of the next batch behind it
// is late for a window without grace.
func TestBatchRepartitionArrivesPerUpstreamTask(t *testing.T) {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	all := stream.GroupBy(clicks, func(string, string) string { return "all" }, codec.String{}, codec.String{},
		stream.Named("all"), stream.Partitions(1))
	stream.WindowedCount(stream.WindowedBy(all, stream.Tumbling(10*time.Second)), stream.Named("per-10s"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	k0, k1 := keyIn(t, 0, 2), keyIn(t, 1, 2)
	pipe := func(in *streamtest.Input[string, string]) error {
		var errs []error
		for _, r := range []streamtest.Record[string, string]{
			{Key: k0, Value: "a", Timestamp: t0.Add(1 * time.Second)},
			{Key: k1, Value: "b", Timestamp: t0.Add(2 * time.Second)},
			{Key: k0, Value: "c", Timestamp: t0.Add(12 * time.Second)},
		} {
			errs = append(errs, in.Send(r))
		}
		return errors.Join(errs...)
	}

	// Together: task 0's cycle writes 1s and 12s, task 1's then writes 2s;
	// downstream 2s comes after 12s and its window [0s, 10s) has closed.
	d := streamtest.New(t, topo, streamtest.Partitions(2))
	in := streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})
	var inner error
	err = d.Batch(func() { inner = pipe(in) })
	if inner != nil {
		t.Fatal(inner)
	}
	if !errors.Is(err, stream.ErrLateRecord) {
		t.Errorf("batch: %v, want the 2s record late (stream.ErrLateRecord)", err)
	}
	var got []string
	for _, m := range d.Messages("streamtest-all-repartition") {
		got = append(got, m.Timestamp.Sub(t0).String())
	}
	if want := []string{"1s", "12s", "2s"}; !slices.Equal(got, want) {
		t.Errorf("repartition topic holds %v, want %v (task 0's batch, then task 1's)", got, want)
	}

	// One by one: every record is on time.
	d = streamtest.New(t, topo, streamtest.Partitions(2))
	if err := pipe(streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})); err != nil {
		t.Errorf("one by one: %v", err)
	}
}

// A loop record is processed in a cycle after the one that emitted it, as
// in the runtime, where it becomes readable when that cycle commits: a
// record piped in the same batch as its cause is processed before it.
func TestBatchLoopAfterCommit(t *testing.T) {
	b := stream.NewBuilder()
	in := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	loop := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("acks"))
	seen := stream.DeclareStore(b, "acked", codec.String{}, codec.String{})
	out := stream.DeclareOutput(b, "out", codec.String{}, codec.String{})
	all := stream.Merge([]stream.Stream[string, string]{in, loop.Stream()}, stream.Named("merge"))
	stream.Process(all, func(h *stream.Handle, r stream.Record[string, string]) error {
		if r.Value == "ack" {
			return stream.Put(h, seen, r.Key, "yes")
		}
		_, acked, err := stream.Get(h, seen, r.Key)
		if err != nil {
			return err
		}
		if err := stream.Emit(h, out, r.Key, fmt.Sprintf("%s acked=%v", r.Value, acked)); err != nil {
			return err
		}
		return stream.Emit(h, loop.Output(), r.Key, "ack")
	}, stream.Named("ack"), stream.Uses(seen), stream.EmitsTo(out, loop.Output()))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, batch := range []bool{true, false} {
		d := streamtest.New(t, topo)
		input := streamtest.NewInput(d, "in", codec.String{}, codec.String{})
		output := streamtest.NewOutput(d, "out", codec.String{}, codec.String{})
		pipe := func() {
			input.Pipe("a", "1")
			input.Pipe("a", "2")
		}
		want := []string{"1 acked=false", "2 acked=true"}
		if batch {
			if err := d.Batch(pipe); err != nil {
				t.Fatal(err)
			}
			want = []string{"1 acked=false", "2 acked=false"}
		} else {
			pipe()
		}
		if got := output.ReadValues(); !slices.Equal(got, want) {
			t.Errorf("batch %v: %q, want %q", batch, got, want)
		}
	}
}

// Batches nest, and records piped in a batch wait for the outermost one.
func TestBatchNested(t *testing.T) {
	b := stream.NewBuilder()
	stream.To(stream.Source(b, "in", codec.String{}, codec.String{}), "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo)
	in := streamtest.NewInput(d, "in", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "out", codec.String{}, codec.String{})
	err = d.Batch(func() {
		in.Pipe("a", "1")
		if err := d.Batch(func() { in.Pipe("b", "2") }); err != nil {
			t.Error(err)
		}
		if got := out.ReadValues(); len(got) != 0 {
			t.Errorf("inside the batch: %q processed", got)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.ReadValues(); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("after the batch: %q", got)
	}
}
