package stream_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

func stageNames(topo *stream.Topology) []string {
	var names []string
	for _, s := range topology.Of(topo).Stages {
		names = append(names, s.Name)
	}
	return names
}

func TestGroupByKeyRepartitionsOnlyAfterKeyChange(t *testing.T) {
	tests := []struct {
		name   string
		build  func(s stream.Stream[string, string]) stream.Stream[string, string]
		stages int
	}{
		{"after Source", func(s stream.Stream[string, string]) stream.Stream[string, string] { return s }, 1},
		{"after Filter and MapValues", func(s stream.Stream[string, string]) stream.Stream[string, string] {
			return stream.MapValues(stream.Filter(s, func(k, v string) bool { return true }), byValue)
		}, 1},
		{"after Map", func(s stream.Stream[string, string]) stream.Stream[string, string] {
			return stream.Map(s, func(k, v string) (string, string) { return v, k })
		}, 2},
		{"after FlatMap", func(s stream.Stream[string, string]) stream.Stream[string, string] {
			return stream.FlatMap(s, splitWords)
		}, 2},
		{"after a repartition", func(s stream.Stream[string, string]) stream.Stream[string, string] {
			g := stream.GroupBy(s, byValue, codec.String{}, codec.String{}, stream.Named("first"))
			return stream.MapValues(stream.Count(g, stream.Named("c1")).ToStream(), func(string, int64) string { return "" })
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := stream.NewBuilder()
			s := tt.build(src(b, "in", stream.Named("read")))
			stream.Count(stream.GroupByKey(s, codec.String{}, codec.String{}, stream.Named("g")), stream.Named("n"))
			topo, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			if got := len(topology.Of(topo).Stages); got != tt.stages {
				t.Fatalf("%d stages, want %d:\n%v", got, tt.stages, topo)
			}
		})
	}
}

func TestMapFilterAggregate(t *testing.T) {
	type total struct {
		N   int
		Sum int
	}
	b := stream.NewBuilder()
	s := src(b, "in", stream.Named("read"))
	lens := stream.Map(stream.Filter(s, func(k, v string) bool { return v != "" }),
		func(k, v string) (string, int) { return strings.ToUpper(k), len(v) })
	g := stream.GroupByKey(lens, codec.String{}, codec.JSON[int]{}, stream.Named("by-key"))
	agg := stream.Aggregate(g, func() total { return total{} },
		func(k string, v int, a total) total { return total{a.N + 1, a.Sum + v} },
		codec.JSON[total]{}, stream.Named("totals"))
	stream.To(stream.MapValues(agg.ToStream(), func(k string, a total) int64 { return int64(a.Sum) }),
		"sums", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	stages := topology.Of(topo).Stages
	t1, t2 := newTask(0), newTask(0, "totals")
	for i, v := range []string{"ab", "", "cde"} {
		if err := stages[0].Program("app")(t1, rec("in", 0, int64(i), "k", v)); err != nil {
			t.Fatal(err)
		}
	}
	want := []kv{{"app-by-key-repartition", "K", "2"}, {"app-by-key-repartition", "K", "3"}}
	if got := kvs(t1.emits); !equalKVs(got, want) {
		t.Fatalf("stage 1 emits %v, want %v", got, want)
	}
	for _, o := range t1.emits {
		if err := stages[1].Program("app")(t2, rec(o.Topic, 0, 0, string(o.Key), string(o.Value))); err != nil {
			t.Fatal(err)
		}
	}
	want = []kv{{"sums", "K", "2"}, {"sums", "K", "5"}}
	if got := kvs(t2.emits); !equalKVs(got, want) {
		t.Fatalf("stage 2 emits %v, want %v", got, want)
	}
	if got := string(t2.stores["totals"].m["K"]); got != `{"N":2,"Sum":5}` {
		t.Fatalf("store totals[K] = %s", got)
	}
}

// Processors on two sources that share a store form one stage with two
// inputs, and its Program dispatches on the record's topic.
func TestSharedStoreJoinsStages(t *testing.T) {
	b := stream.NewBuilder()
	names := stream.DeclareStore(b, "names", codec.String{}, codec.String{})
	greetings := stream.DeclareOutput(b, "greetings", codec.String{}, codec.String{})
	users := src(b, "users", stream.Named("read-users"))
	logins := src(b, "logins", stream.Named("read-logins"))
	src(b, "unrelated", stream.Named("other")) // its own stage
	stream.Process(users, func(h *stream.Handle, r stream.Record[string, string]) error {
		return stream.Put(h, names, r.Key, r.Value)
	}, stream.Uses(names), stream.Named("remember"))
	stream.Process(logins, func(h *stream.Handle, r stream.Record[string, string]) error {
		name, ok, err := stream.Get(h, names, r.Key)
		if err != nil || !ok {
			return err
		}
		return stream.Emit(h, greetings, r.Key, "hello "+name)
	}, stream.Uses(names), stream.EmitsTo(greetings), stream.Named("greet"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if got := stageNames(topo); !reflect.DeepEqual(got, []string{"read-users", "other"}) {
		t.Fatalf("stages %v", got)
	}
	s := topology.Of(topo).Stages[0]
	if want := []topology.TopicRef{{Name: "users"}, {Name: "logins"}}; !reflect.DeepEqual(s.Inputs, want) {
		t.Fatalf("inputs %v, want %v", s.Inputs, want)
	}
	p, task := s.Program("app"), newTask(0, "names")
	for _, r := range []struct{ topic, k, v string }{{"logins", "u1", ""}, {"users", "u1", "Ann"}, {"logins", "u1", ""}} {
		if err := p(task, rec(r.topic, 0, 0, r.k, r.v)); err != nil {
			t.Fatal(err)
		}
	}
	if got := kvs(task.emits); !equalKVs(got, []kv{{"greetings", "u1", "hello Ann"}}) {
		t.Fatalf("emits %v", got)
	}
}

// Stages come upstream first, whatever the declaration order.
func TestStagesTopologicalOrder(t *testing.T) {
	b := stream.NewBuilder()
	stream.To(src(b, "b", stream.Named("third")), "c", codec.String{}, codec.String{})
	stream.To(src(b, "a", stream.Named("second")), "b", codec.String{}, codec.String{})
	stream.To(src(b, "start", stream.Named("first")), "a", codec.String{}, codec.String{})
	src(b, "alone", stream.Named("alone"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stageNames(topo), []string{"first", "second", "third", "alone"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("stages %v, want %v", got, want)
	}
}

func TestZeroValuesDoNothing(t *testing.T) {
	var s stream.Stream[string, string]
	m := stream.Map(s, func(k, v string) (string, string) { return k, v })
	stream.To(m, "out", codec.String{}, codec.String{})
	stream.Count(stream.GroupByKey(m, codec.String{}, codec.String{}))
	stream.Process(s, noop)
	if got := stream.Source(nil, "in", codec.String{}, codec.String{}); got != (stream.Stream[string, string]{}) {
		t.Fatal("Source on a nil Builder returned a live stream")
	}
	if (stream.StoreRef[string, string]{}).Name() != "" || (stream.OutputRef[string, string]{}).Topic() != "" {
		t.Fatal("zero refs have names")
	}
}
