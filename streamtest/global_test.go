package streamtest_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// clicksWithPlan looks up the plan of each click's account in a global
// table: clicks are keyed by session, plans by account.
func clicksWithPlan(t *testing.T, left bool) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks")) // session -> account
	plans := stream.SourceGlobalTable(b, "plans", codec.String{}, codec.String{}, stream.Named("plans"))
	account := func(_, acct string) string { return acct }
	var out stream.Stream[string, string]
	if left {
		out = stream.GlobalLeftJoin(clicks, plans, account, func(_, acct, plan string, ok bool) string {
			if !ok {
				plan = "none"
			}
			return acct + "/" + plan
		}, stream.Named("plan"))
	} else {
		out = stream.GlobalJoin(clicks, plans, account, func(_, acct, plan string) string { return acct + "/" + plan }, stream.Named("plan"))
	}
	stream.To(out, "out", codec.String{}, codec.String{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func values(o *streamtest.Output[string, string]) string {
	return strings.Join(o.ReadValues(), " ")
}

func TestGlobalTableLookup(t *testing.T) {
	d := streamtest.New(t, clicksWithPlan(t, false), streamtest.TopicPartitions("clicks", 3), streamtest.TopicPartitions("plans", 5))
	clicks := streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})
	plans := streamtest.NewInput(d, "plans", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "out", codec.String{}, codec.String{})
	gt := streamtest.OpenGlobalTable(d, "plans", codec.String{}, codec.String{})

	clicks.Pipe("s1", "acme") // miss: dropped
	if got := values(out); got != "" {
		t.Fatalf("a miss emitted %q", got)
	}
	plans.Pipe("acme", "gold") // updates the copy at once, emits nothing
	plans.Pipe("initech", "free")
	if got := values(out); got != "" {
		t.Fatalf("a global table update emitted %q", got)
	}
	if v, ok := gt.Get("acme"); !ok || v != "gold" {
		t.Fatalf("global table acme = %q, %v", v, ok)
	}
	// Sessions in every partition of clicks find accounts in every
	// partition of plans.
	for _, s := range []string{"s1", "s2", "s3", "s4", "s5", "s6"} {
		clicks.Pipe(s, "acme")
		clicks.Pipe(s, "initech")
	}
	seen := map[int32]bool{}
	for _, m := range d.Messages("clicks") {
		seen[m.Partition] = true
	}
	if len(seen) != 3 {
		t.Fatalf("clicks landed in %d partitions, want all 3", len(seen))
	}
	if got, want := values(out), strings.Repeat("acme/gold initech/free ", 6); got+" " != want {
		t.Fatalf("outputs %q, want %q", got, want)
	}
	if got := gt.All(); len(got) != 2 || got[0] != (stream.KeyValue[string, string]{Key: "acme", Value: "gold"}) {
		t.Fatalf("All() = %v", got)
	}
}

func TestGlobalTableLeftJoinAndTombstone(t *testing.T) {
	d := streamtest.New(t, clicksWithPlan(t, true), streamtest.Partitions(2))
	clicks := streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})
	plans := streamtest.NewInput(d, "plans", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "out", codec.String{}, codec.String{})
	gt := streamtest.OpenGlobalTable(d, "plans", codec.String{}, codec.String{})

	clicks.Pipe("s1", "acme")
	plans.Pipe("acme", "gold")
	clicks.Pipe("s2", "acme")
	plans.Pipe("acme", "silver")
	clicks.Pipe("s3", "acme")
	plans.PipeTombstone("acme")
	plans.PipeTombstone("nobody") // deleting a missing key changes nothing
	clicks.Pipe("s4", "acme")
	if got, want := values(out), "acme/none acme/gold acme/silver acme/none"; got != want {
		t.Fatalf("outputs %q, want %q", got, want)
	}
	if _, ok := gt.Get("acme"); ok || gt.Len() != 0 {
		t.Fatalf("global table holds %d keys after the tombstones", gt.Len())
	}
}

// The global topic is not an input of any stage: piping into it processes
// nothing, and Validate does not ask it to be co-partitioned with the
// stream.
func TestGlobalTableNotAStageInput(t *testing.T) {
	topo := clicksWithPlan(t, false)
	if err := streamtest.Validate(topo, streamtest.TopicPartitions("clicks", 4), streamtest.TopicPartitions("plans", 1)); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for _, st := range topology.Of(topo).Stages {
		for _, in := range st.Inputs {
			if in.Name == "plans" {
				t.Fatalf("stage %s reads the global table's topic", st.Name)
			}
		}
	}
	d := streamtest.New(t, topo)
	if err := d.PipeMessage("plans", streamtest.Message{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if n := len(d.Messages("out")); n != 0 {
		t.Fatalf("piping into the global topic emitted %d records", n)
	}
}

// OpenGlobalTable fails the test for a name the topology lacks.
func TestOpenGlobalTableUnknown(t *testing.T) {
	ft := &fakeT{}
	d := streamtest.New(ft, clicksWithPlan(t, false))
	if g := streamtest.OpenGlobalTable(d, "nope", codec.String{}, codec.String{}); g != nil {
		t.Fatal("OpenGlobalTable of an unknown name returned a table")
	}
	if len(ft.fatals) != 1 || !strings.Contains(ft.fatals[0], `the topology has no global table "nope"`) {
		t.Fatalf("Fatalf calls %q", ft.fatals)
	}
}
