package stream_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// A countdown: every input n comes back through the loop as n-1 until 0.
func TestLoopTo(t *testing.T) {
	b := stream.NewBuilder()
	in := stream.Source(b, "in", codec.String{}, codec.Int64Text{}, stream.Named("read"))
	loop := stream.DeclareLoop(b, codec.String{}, codec.Int64Text{}, stream.Named("countdown"))
	all := stream.Merge([]stream.Stream[string, int64]{in, loop.Stream()})
	stream.To(all, "out", codec.String{}, codec.Int64Text{})
	again := stream.MapValues(stream.Filter(all, func(_ string, n int64) bool { return n > 0 }),
		func(_ string, n int64) int64 { return n - 1 })
	stream.LoopTo(again, loop)
	d, topo := drive(t, b, streamtest.Partitions(2), streamtest.ApplicationID("app"))
	stages := topology.Of(topo).Stages
	loopRef := topology.TopicRef{Name: "countdown-loop", Internal: true}
	if len(stages) != 1 || !slices.Contains(stages[0].Inputs, loopRef) || !slices.Contains(stages[0].Outputs, loopRef) {
		t.Fatalf("want one stage reading and writing its loop:\n%v", topo)
	}
	if d.PartitionCount("app-countdown-loop") != 2 {
		t.Fatalf("loop topic has %d partitions, want the stage's 2", d.PartitionCount("app-countdown-loop"))
	}
	streamtest.NewInput(d, "in", codec.String{}, codec.Int64Text{}).Pipe("k", 3)
	wantKVs(t, streamtest.NewOutput(d, "out", codec.String{}, codec.Int64Text{}), "k=3 k=2 k=1 k=0")
}

// goka's Loop from a Process function: Emit to the loop's Output.
func TestLoopFromProcess(t *testing.T) {
	b := stream.NewBuilder()
	loop := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("fanout"))
	seen := stream.DeclareStore(b, "seen", codec.String{}, codec.String{})
	stream.Process(src(b, "in", stream.Named("read")), func(h *stream.Handle, r stream.Record[string, string]) error {
		for _, u := range strings.Split(r.Value, ",") {
			if err := stream.Emit(h, loop.Output(), u, r.Key); err != nil {
				return err
			}
		}
		return nil
	}, stream.EmitsTo(loop.Output()))
	stream.Process(loop.Stream(), func(h *stream.Handle, r stream.Record[string, string]) error {
		return stream.Put(h, seen, r.Key, r.Value)
	}, stream.Uses(seen))
	d, topo := drive(t, b, streamtest.Partitions(3))
	if len(topology.Of(topo).Stages) != 1 {
		t.Fatalf("want one stage:\n%v", topo)
	}
	strIn(d, "in").Pipe("post1", "ann,bob")
	st := streamtest.OpenStore(d, "seen", codec.String{}, codec.String{})
	for _, e := range st.All() {
		if p := streamtest.Partition([]byte(e.Key), 3); e.Partition != p || e.Value != "post1" {
			t.Errorf("entry %+v, want value post1 in partition %d", e, p)
		}
	}
	if st.Len() != 2 {
		t.Errorf("%d entries, want 2", st.Len())
	}
}

// The driver stops a loop that never ends.
func TestLoopForever(t *testing.T) {
	b := stream.NewBuilder()
	loop := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("forever"))
	stream.LoopTo(stream.Merge([]stream.Stream[string, string]{src(b, "in"), loop.Stream()}), loop)
	d, _ := drive(t, b, streamtest.MaxDeliveries(50))
	if err := strIn(d, "in").Send(streamtest.Record[string, string]{Key: "k", Value: "v"}); err == nil || !strings.Contains(err.Error(), "MaxDeliveries") {
		t.Fatalf("Send = %v, want the loop stopped", err)
	}
}

// A record whose processing fails leaves no effect: neither its store
// writes nor its outputs, as in the runtime.
func TestFailedRecordLeavesNoEffect(t *testing.T) {
	b := stream.NewBuilder()
	st := stream.DeclareStore(b, "st", codec.String{}, codec.String{})
	out := stream.DeclareOutput(b, "out", codec.String{}, codec.String{})
	stream.Process(src(b, "in", stream.Named("read")), func(h *stream.Handle, r stream.Record[string, string]) error {
		if err := stream.Put(h, st, r.Key, r.Value); err != nil {
			return err
		}
		if err := stream.Emit(h, out, r.Key, r.Value); err != nil {
			return err
		}
		switch r.Value {
		case "fail":
			return errors.New("boom")
		case "panic":
			panic("kaboom")
		case "big":
			return stream.Emit(h, out, r.Key, strings.Repeat("x", 2000))
		}
		return nil
	}, stream.Uses(st), stream.EmitsTo(out), stream.Named("p"))
	d, _ := drive(t, b, streamtest.MaxRecordBytes(1024))
	in := strIn(d, "in")
	in.Pipe("k", "ok")

	err := in.Send(streamtest.Record[string, string]{Key: "k", Value: "fail"})
	var re *streamtest.RecordError
	if !errors.As(err, &re) || re.Stage != "read" || re.Topic != "in" || re.Offset != 1 || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Send(fail) = %v, want a RecordError at in/0@1", err)
	}
	err = in.Send(streamtest.Record[string, string]{Key: "k", Value: "panic"})
	var pe *streamtest.PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" {
		t.Errorf("Send(panic) = %v, want a PanicError", err)
	}
	// Too large even if the function ignored the error: the runtime's rule.
	if err := in.Send(streamtest.Record[string, string]{Key: "k", Value: "big"}); !errors.Is(err, exec.ErrRecordTooLarge) {
		t.Errorf("Send(big) = %v, want ErrRecordTooLarge", err)
	}
	if v, _ := streamtest.OpenStore(d, "st", codec.String{}, codec.String{}).Get("k"); v != "ok" {
		t.Errorf("store k = %q, want ok: a failed record wrote it", v)
	}
	wantKVs(t, strOut(d, "out"), "k=ok")
}

// A record that fails downstream of a repartition leaves no effect there;
// the upstream stage's effects stand (its record succeeded).
func TestFailureDownstreamOfRepartition(t *testing.T) {
	b := stream.NewBuilder()
	g := stream.GroupBy(src(b, "in", stream.Named("read")), byValue, codec.String{}, codec.String{}, stream.Named("g"))
	counts := stream.Count(g, stream.Named("n")).ToStream()
	checked := stream.ProcessTo(counts, func(_ *stream.Handle, r stream.Record[string, int64], fwd stream.Forwarder[string, int64]) error {
		if r.Value > 1 {
			return fmt.Errorf("%s seen twice", r.Key)
		}
		return fwd.Forward(r.Key, r.Value)
	}, stream.Named("once"))
	stream.To(checked, "out", codec.String{}, codec.Int64Text{})
	d, _ := drive(t, b)
	in := strIn(d, "in")
	in.Pipe("k", "a")
	err := in.Send(streamtest.Record[string, string]{Key: "k", Value: "a"})
	var re *streamtest.RecordError
	if !errors.As(err, &re) || re.Stage != "g" || !strings.Contains(err.Error(), "a seen twice") {
		t.Fatalf("Send = %v, want a RecordError of stage g", err)
	}
	if got := len(d.Messages("streamtest-g-repartition")); got != 2 {
		t.Fatalf("%d repartition records, want 2: the upstream records succeeded", got)
	}
	if n, _ := streamtest.OpenStore(d, "n", codec.String{}, codec.Int64{}).Get("a"); n != 1 {
		t.Fatalf("count of a = %d, want 1: the failed record's count must not stick", n)
	}
	wantKVs(t, streamtest.NewOutput(d, "out", codec.String{}, codec.Int64Text{}), "a=1")
}
