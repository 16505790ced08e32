package stream_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

func TestDescribeWordCount(t *testing.T) {
	desc := wordCount(t).String()
	for _, want := range []string{
		"Topology: 2 stages, 1 store\n",
		"Stage \"read-lines\"\n  inputs:  lines\n  outputs: by-word-repartition (internal)\n",
		"Stage \"by-word\"\n  inputs:  by-word-repartition (internal)\n  outputs: word-counts\n  stores:  counts\n",
		`Source "read-lines" <- lines`,
		`GroupBy "by-word" -> by-word-repartition (internal)`,
		`Count "counts" [store counts]`,
		`-> word-counts`,
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("description does not contain %q:\n%s", want, desc)
		}
	}
	if strings.Contains(desc, "WARNING") {
		t.Errorf("description warns although every stage, store and topic is named:\n%s", desc)
	}
}

func TestDescribeWarnsAboutGeneratedNames(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "lines", codec.String{}, codec.String{})
	g := stream.GroupBy(s, byValue, codec.String{}, codec.String{})
	stream.To(stream.Count(g).ToStream(), "out", codec.String{}, codec.Int64{})
	stream.DeclareStore(b, "unused", codec.String{}, codec.String{})
	stream.DeclareOutput(b, "nowhere", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	desc := topo.String()
	stages := topo.Stages()
	if !stages[0].GeneratedName || stages[0].Name != "source-0" || !stages[1].GeneratedName || stages[1].Name != "groupby-1" ||
		!stages[1].Stores[0].GeneratedName || stages[1].Stores[0].Name != "count-2" {
		t.Fatalf("stages %+v %+v", stages[0], stages[1])
	}
	for _, want := range []string{
		`WARNING: stage "source-0" has a generated name`,
		`WARNING: stage "groupby-1" has a generated name`,
		`WARNING: repartition topic "groupby-1-repartition" has a generated name`,
		`WARNING: store "count-2" has a generated name`,
		`WARNING: store "unused" is declared but no Process uses it`,
		`WARNING: output "nowhere" is declared but no Process emits to it`,
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("description does not contain %q:\n%s", want, desc)
		}
	}
	if n := strings.Count(desc, "WARNING"); n != 6 {
		t.Errorf("%d warnings, want 6:\n%s", n, desc)
	}
}
