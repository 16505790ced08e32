package main

import (
	"strings"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// Topology builds the word count: every line is lowercased and split on white
// space, words are re-keyed by themselves through a repartition topic, counted
// in the store "counts", and each new count goes to output as decimal text.
func Topology(input, output string) (*stream.Topology, error) {
	b := stream.NewBuilder()
	lines := stream.Source(b, input, codec.String{}, codec.String{}, stream.Named("split"))
	words := stream.FlatMap(lines, func(_, line string) []stream.KeyValue[string, string] {
		fields := strings.Fields(strings.ToLower(line))
		out := make([]stream.KeyValue[string, string], len(fields))
		for i, w := range fields {
			out[i] = stream.KeyValue[string, string]{Key: w, Value: w}
		}
		return out
	}, stream.Named("words"))
	byWord := stream.GroupBy(words, func(word, _ string) string { return word },
		codec.String{}, codec.String{}, stream.Named("by-word"))
	counts := stream.Count(byWord, stream.Named("counts"))
	stream.To(counts.ToStream(), output, codec.String{}, codec.Int64Text{}, stream.Named("write-counts"))
	return b.Build()
}
