package stream_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
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
	stages := topology.Of(topo).Stages
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

func TestDescribeLoopWarnings(t *testing.T) {
	b := stream.NewBuilder()
	used := stream.DeclareLoop(b, codec.String{}, codec.String{}) // generated name
	stream.LoopTo(src(b, "in", stream.Named("read")), used)
	stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("idle"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	desc := topo.String()
	for _, want := range []string{
		`WARNING: loop topic "loop-0-loop" has a generated name`,
		`WARNING: loop topic "idle-loop" is never written`,
	} {
		if !strings.Contains(desc, want) {
			t.Errorf("description does not contain %q:\n%s", want, desc)
		}
	}
}

// The DOT form of the word count, pinned: one cluster per stage, topics as
// ellipses (internal ones dashed), stores as cylinders.
func TestDOTWordCount(t *testing.T) {
	got := wordCount(t).DOT()
	want := `digraph topology {
  rankdir=LR;
  node [shape=box, style=rounded, fontname="Helvetica"];
  edge [fontname="Helvetica"];
  subgraph cluster_0 {
    label="Stage \"read-lines\"";
    style=rounded;
    "op0" [label="Source \"read-lines\""];
    "op1" [label="FlatMap \"flatmap-1\""];
    "op2" [label="GroupBy \"by-word\""];
  }
  subgraph cluster_1 {
    label="Stage \"by-word\"";
    style=rounded;
    "op3" [label="Repartition \"by-word\""];
    "op4" [label="Count \"counts\""];
    "op5" [label="To \"to-4\""];
    "store:counts" [shape=cylinder, style=solid, label="counts"];
  }
  "topic:lines" [shape=ellipse, style=solid, label="lines"];
  "internal:by-word-repartition" [shape=ellipse, style=dashed, label="by-word-repartition\n(internal)"];
  "topic:word-counts" [shape=ellipse, style=solid, label="word-counts"];
  "topic:lines" -> "op0";
  "op0" -> "op1";
  "op1" -> "op2";
  "op2" -> "internal:by-word-repartition";
  "internal:by-word-repartition" -> "op3";
  "op3" -> "op4";
  "op4" -> "store:counts" [style=dotted, arrowhead=none];
  "op4" -> "op5";
  "op5" -> "topic:word-counts";
}
`
	if got != want {
		t.Errorf("DOT:\n%s\nwant:\n%s", got, want)
	}
}

// Operators with two inputs get an edge from each; generated internal names
// are red.
func TestDOTJoin(t *testing.T) {
	b := stream.NewBuilder()
	views := src(b, "views", stream.Named("views"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	j := stream.Join(views, users, func(_, v, u string) string { return v + u }, stream.Named("j"))
	stream.Count(stream.GroupBy(j, byValue, codec.String{}, codec.String{}))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	dot := topo.DOT()
	for _, want := range []string{
		`"op0" -> "op2";`, // views -> j
		`"op1" -> "op2";`, // users -> j
		`"op2" -> "store:users" [style=dotted, arrowhead=none];`,
		`"internal:groupby-3-repartition" [shape=ellipse, style=dashed, color=red,`,
		`"store:count-4" [shape=cylinder, style=solid, label="count-4", color=red];`,
		"fontcolor=red;", // the stage named after the generated GroupBy
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %s:\n%s", want, dot)
		}
	}
}
