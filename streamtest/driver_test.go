package streamtest_test

import (
	"strings"
	"testing"

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
