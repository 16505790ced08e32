package streamtest_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

func wordCount(t *testing.T) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	lines := stream.Source(b, "lines", codec.String{}, codec.String{}, stream.Named("split"))
	words := stream.FlatMap(lines, func(_, line string) []stream.KeyValue[string, string] {
		var out []stream.KeyValue[string, string]
		for _, w := range strings.Fields(line) {
			out = append(out, stream.KeyValue[string, string]{Key: w, Value: w})
		}
		return out
	}, stream.Named("words"))
	counts := stream.Count(stream.GroupBy(words, func(w, _ string) string { return w },
		codec.String{}, codec.String{}, stream.Named("by-word")), stream.Named("counts"))
	stream.To(counts.ToStream(), "word-counts", codec.String{}, codec.Int64Text{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestWordCount(t *testing.T) {
	d := streamtest.New(t, wordCount(t), streamtest.Partitions(4), streamtest.ApplicationID("wc"))
	lines := streamtest.NewInput(d, "lines", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "word-counts", codec.String{}, codec.Int64Text{})
	lines.Pipe("", "a b a")
	lines.Pipe("", "c a")
	got := streamtest.ReadTable(out, nil)
	want := map[string]int64{"a": 3, "b": 1, "c": 1}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("counts %v, want %v", got, want)
		}
	}
	store := streamtest.OpenStore(d, "counts", codec.String{}, codec.Int64{})
	if n, ok := store.Get("a"); !ok || n != 3 {
		t.Fatalf("store a = %d, %v", n, ok)
	}
	// The repartition topic is partitioned by murmur2 of the word.
	for _, m := range d.Messages("wc-by-word-repartition") {
		if want := streamtest.Partition(m.Key, 4); m.Partition != want {
			t.Errorf("word %q in partition %d, want %d", m.Key, m.Partition, want)
		}
	}
	for _, e := range store.All() {
		if want := streamtest.Partition([]byte(e.Key), 4); e.Partition != want {
			t.Errorf("count of %q in task %d, want %d", e.Key, e.Partition, want)
		}
	}
}

// fakeT records Fatalf calls instead of stopping the test.
type fakeT struct{ fatals []string }

func (*fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

func TestTimestampsAndWallClock(t *testing.T) {
	b := stream.NewBuilder()
	stream.To(stream.Source(b, "in", codec.String{}, codec.String{}), "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2024, 2, 29, 12, 0, 0, 0, time.UTC)
	d := streamtest.New(t, topo, streamtest.StartTime(start))
	in := streamtest.NewInput(d, "in", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "out", codec.String{}, codec.String{})
	in.Pipe("a", "1")
	d.AdvanceWallClock(time.Minute)
	in.Pipe("b", "2")
	at := start.Add(-time.Hour)
	in.PipeAt(at, "c", "3")
	rs := out.ReadAll()
	if len(rs) != 3 || !rs[0].Timestamp.Equal(start) || !rs[1].Timestamp.Equal(start.Add(time.Minute)) || !rs[2].Timestamp.Equal(at) {
		t.Fatalf("records %+v: outputs carry the input's timestamp, the wall clock by default", rs)
	}
	if rs[2].Offset != 2 || rs[2].Partition != 0 {
		t.Errorf("third record at %d@%d", rs[2].Partition, rs[2].Offset)
	}
	if _, ok := out.Read(); ok {
		t.Error("Read after ReadAll returned a record")
	}
}

func TestRawMessages(t *testing.T) {
	b := stream.NewBuilder()
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	stream.TableTo(users, "copy", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.TopicPartitions("users", 3), streamtest.TopicPartitions("copy", 5))
	if err := d.PipeMessage("users", streamtest.Message{Key: []byte("ann"), Value: []byte("de"),
		Headers: []stream.Header{{Key: "h", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.PipeMessage("users", streamtest.Message{Key: []byte("ann")}); err != nil { // a tombstone
		t.Fatal(err)
	}
	msgs := d.Messages("copy")
	if len(msgs) != 2 || string(msgs[0].Value) != "de" || msgs[1].Value != nil || len(msgs[0].Headers) != 1 {
		t.Fatalf("copy holds %+v", msgs)
	}
	if p := streamtest.Partition([]byte("ann"), 5); msgs[0].Partition != p || msgs[1].Offset != 1 {
		t.Errorf("copy records at %d@%d and %d@%d, want partition %d", msgs[0].Partition, msgs[0].Offset, msgs[1].Partition, msgs[1].Offset, p)
	}
	if d.PartitionCount("users") != 3 || d.PartitionCount("copy") != 5 || d.PartitionCount("nope") != 0 {
		t.Error("PartitionCount")
	}
	if err := d.PipeMessage("nope", streamtest.Message{}); err == nil || !strings.Contains(err.Error(), "not a topic") {
		t.Errorf("PipeMessage to an unknown topic: %v", err)
	}
	if err := d.PipeMessage("copy", streamtest.Message{}); err == nil || !strings.Contains(err.Error(), "not read") {
		t.Errorf("PipeMessage to an output: %v", err)
	}
	out := streamtest.NewOutput(d, "copy", codec.String{}, codec.String{})
	if rs := out.ReadAll(); len(rs) != 2 || !rs[1].Tombstone || rs[0].Value != "de" {
		t.Errorf("typed read %+v", rs)
	}
}

func TestValidate(t *testing.T) {
	topo := wordCount(t)
	if err := streamtest.Validate(topo, streamtest.ApplicationID("bad app")); !errors.Is(err, stream.ErrInvalidName) {
		t.Errorf("Validate with a bad application id = %v", err)
	}
	if err := streamtest.Validate(topo, streamtest.Partitions(0)); err == nil {
		t.Error("Validate with Partitions(0) succeeded")
	}
	// A loop alone gives its stage no partition count.
	b := stream.NewBuilder()
	l := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("l"))
	stream.LoopTo(l.Stream(), l)
	loopOnly, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := streamtest.Validate(loopOnly); err == nil || !strings.Contains(err.Error(), "give the loop stream.Partitions") {
		t.Errorf("Validate(loop only) = %v", err)
	}

	var ft fakeT
	if d := streamtest.New(&ft, loopOnly); d != nil || len(ft.fatals) != 1 {
		t.Errorf("New of a bad topology: %v, %q", d, ft.fatals)
	}
	d := streamtest.New(&ft, topo)
	streamtest.OpenStore(d, "nope", codec.String{}, codec.String{})
	streamtest.NewInput(d, "word-counts", codec.String{}, codec.String{})
	streamtest.NewOutput(d, "elsewhere", codec.String{}, codec.String{})
	if len(ft.fatals) != 4 || !strings.Contains(ft.fatals[1], `no store "nope"`) ||
		!strings.Contains(ft.fatals[2], "not read") || !strings.Contains(ft.fatals[3], "not a topic") {
		t.Errorf("fatals %q", ft.fatals)
	}
}
