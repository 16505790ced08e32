package stream_test

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// The word count: split lines into words, count them per word, write the
// counts. GroupBy splits the topology into two stages at its repartition
// topic.
func ExampleBuilder() {
	b := stream.NewBuilder()
	lines := stream.Source(b, "lines", codec.String{}, codec.String{}, stream.Named("read-lines"))
	words := stream.FlatMap(lines, func(k, line string) []stream.KeyValue[string, string] {
		var out []stream.KeyValue[string, string]
		for _, w := range strings.Fields(line) {
			out = append(out, stream.KeyValue[string, string]{Key: k, Value: w})
		}
		return out
	})
	byWord := stream.GroupBy(words, func(_, w string) string { return w },
		codec.String{}, codec.String{}, stream.Named("by-word"))
	counts := stream.Count(byWord, stream.Named("counts"))
	stream.To(counts.ToStream(), "word-counts", codec.String{}, codec.Int64Text{})

	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(topo)
	// Output:
	// Topology: 2 stages, 1 store
	// Stage "read-lines"
	//   inputs:  lines
	//   outputs: by-word-repartition (internal)
	//   Source "read-lines" <- lines
	//     FlatMap "flatmap-1"
	//       GroupBy "by-word" -> by-word-repartition (internal)
	// Stage "by-word"
	//   inputs:  by-word-repartition (internal)
	//   outputs: word-counts
	//   stores:  counts
	//   Repartition "by-word" <- by-word-repartition (internal)
	//     Count "counts" [store counts]
	//       To "to-4" -> word-counts
}

// The low-level form: a processor with a declared store and output, in the
// style of goka's Input, Persist and Emit.
func ExampleProcess() {
	b := stream.NewBuilder()
	visits := stream.DeclareStore(b, "visits", codec.String{}, codec.Int64{})
	alerts := stream.DeclareOutput(b, "alerts", codec.String{}, codec.String{})
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("read-clicks"))
	stream.Process(clicks, func(p *stream.Handle, r stream.Record[string, string]) error {
		n, _, err := stream.Get(p, visits, r.Key)
		if err != nil {
			return err
		}
		if err := stream.Put(p, visits, r.Key, n+1); err != nil {
			return err
		}
		if n+1 == 100 {
			return stream.Emit(p, alerts, r.Key, "100 visits")
		}
		return nil
	}, stream.Uses(visits), stream.EmitsTo(alerts), stream.Named("visit-counter"))

	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(topo)
	// Output:
	// Topology: 1 stage, 1 store
	// Stage "read-clicks"
	//   inputs:  clicks
	//   outputs: alerts
	//   stores:  visits
	//   Source "read-clicks" <- clicks
	//     Process "visit-counter" [store visits] [emits alerts]
}
