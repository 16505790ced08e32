package stream_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

func src(b *stream.Builder, topic string, opts ...stream.SourceOption) stream.Stream[string, string] {
	return stream.Source(b, topic, codec.String{}, codec.String{}, opts...)
}

func byValue(_, v string) string { return v }

func noop(*stream.Handle, stream.Record[string, string]) error { return nil }

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *stream.Builder)
		kind  error
		want  []string // substrings of the error message
	}{
		{"no source", func(b *stream.Builder) {}, stream.ErrNoSource, []string{"Source"}},
		{"no source, only a store", func(b *stream.Builder) {
			stream.DeclareStore(b, "s", codec.String{}, codec.String{})
		}, stream.ErrNoSource, nil},

		{"cycle: To a source topic", func(b *stream.Builder) {
			stream.To(src(b, "lines", stream.Named("read")), "lines", codec.String{}, codec.String{}, stream.Named("write"))
		}, stream.ErrCycle, []string{`"lines"`, `stage "read"`, `To "write"`}},
		{"cycle: through a repartition topic", func(b *stream.Builder) {
			g := stream.GroupBy(src(b, "lines", stream.Named("read")), byValue, codec.String{}, codec.String{}, stream.Named("g"))
			stream.To(stream.Count(g, stream.Named("n")).ToStream(), "lines", codec.String{}, codec.Int64{})
		}, stream.ErrCycle, []string{`"g-repartition"`, `"lines"`, `stage "read"`, `stage "g"`}},
		{"cycle: across two stages through user topics", func(b *stream.Builder) {
			stream.To(src(b, "a", stream.Named("ra")), "b", codec.String{}, codec.String{})
			stream.To(src(b, "b", stream.Named("rb")), "a", codec.String{}, codec.String{})
		}, stream.ErrCycle, []string{`topic "a"`, `topic "b"`}},
		{"cycle: EmitsTo a source topic", func(b *stream.Builder) {
			out := stream.DeclareOutput(b, "lines", codec.String{}, codec.String{})
			stream.Process(src(b, "lines"), noop, stream.EmitsTo(out), stream.Named("p"))
		}, stream.ErrCycle, []string{`"lines"`, `Process "p"`}},

		{"cycle: a store shared across a repartition", func(b *stream.Builder) {
			st := stream.DeclareStore(b, "s", codec.String{}, codec.String{})
			in := src(b, "in", stream.Named("read"))
			stream.Process(in, noop, stream.Uses(st))
			g := stream.GroupBy(in, byValue, codec.String{}, codec.String{}, stream.Named("g"))
			stream.Process(stream.Count(g, stream.Named("n")).ToStream(), func(*stream.Handle, stream.Record[string, int64]) error { return nil }, stream.Uses(st))
		}, stream.ErrCycle, []string{`"g-repartition"`, "share a store"}},

		{"zero StoreRef in Uses", func(b *stream.Builder) {
			stream.Process(src(b, "in"), noop, stream.Uses(stream.StoreRef[string, int64]{}), stream.Named("p"))
		}, stream.ErrUndeclaredStore, []string{`Process "p"`, "DeclareStore"}},
		{"nil in Uses", func(b *stream.Builder) {
			stream.Process(src(b, "in"), noop, stream.Uses(nil), stream.Named("p"))
		}, stream.ErrUndeclaredStore, []string{`Process "p"`}},
		{"zero OutputRef in EmitsTo", func(b *stream.Builder) {
			stream.Process(src(b, "in"), noop, stream.EmitsTo(stream.OutputRef[string, string]{}), stream.Named("p"))
		}, stream.ErrUndeclaredOutput, []string{`Process "p"`, "DeclareOutput"}},
		{"store declared twice", func(b *stream.Builder) {
			s1 := stream.DeclareStore(b, "visits", codec.String{}, codec.Int64{})
			s2 := stream.DeclareStore(b, "visits", codec.String{}, codec.String{})
			stream.Process(src(b, "in"), noop, stream.Uses(s1, s2))
		}, stream.ErrNameClash, []string{`store "visits"`, "declared twice"}},
		{"store named like a Count's store", func(b *stream.Builder) {
			stream.DeclareStore(b, "counts", codec.String{}, codec.Int64{})
			stream.Count(stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{}), stream.Named("counts"))
		}, stream.ErrNameClash, []string{`store "counts"`, `Count "counts"`}},

		{"nil key codec in Source", func(b *stream.Builder) {
			stream.Source[string, string](b, "in", nil, codec.String{}, stream.Named("read"))
		}, stream.ErrNilCodec, []string{`Source "read"`, "key codec"}},
		{"nil value codec in To", func(b *stream.Builder) {
			stream.To[string, string](src(b, "in"), "out", codec.String{}, nil, stream.Named("write"))
		}, stream.ErrNilCodec, []string{`To "write"`, "value codec"}},
		{"nil key codec in GroupBy", func(b *stream.Builder) {
			stream.Count(stream.GroupBy[string, string, string](src(b, "in"), byValue, nil, codec.String{}, stream.Named("g")))
		}, stream.ErrNilCodec, []string{`GroupBy "g"`, "key codec"}},
		{"nil value codec in GroupByKey without repartition", func(b *stream.Builder) {
			stream.Count(stream.GroupByKey[string, string](src(b, "in", stream.Named("read")), codec.String{}, nil))
		}, stream.ErrNilCodec, []string{`GroupByKey after Source "read"`, "value codec"}},
		{"nil aggregate codec", func(b *stream.Builder) {
			g := stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{})
			stream.Aggregate[string, string, int](g, func() int { return 0 }, func(string, string, int) int { return 0 }, nil, stream.Named("agg"))
		}, stream.ErrNilCodec, []string{`Aggregate "agg"`, "aggregate codec"}},
		{"nil codec in DeclareStore", func(b *stream.Builder) {
			src(b, "in")
			stream.DeclareStore[string, int64](b, "visits", codec.String{}, nil)
		}, stream.ErrNilCodec, []string{`DeclareStore "visits"`, "value codec"}},
		{"nil codec in DeclareOutput", func(b *stream.Builder) {
			src(b, "in")
			stream.DeclareOutput[string, string](b, "alerts", nil, codec.String{})
		}, stream.ErrNilCodec, []string{`DeclareOutput "alerts"`, "key codec"}},

		{"nil function", func(b *stream.Builder) {
			stream.Map[string, string, string, string](src(b, "in"), nil, stream.Named("m"))
		}, stream.ErrNilFunc, []string{`Map "m"`}},
		{"nil Process function", func(b *stream.Builder) {
			stream.Process[string, string](src(b, "in"), nil, stream.Named("p"))
		}, stream.ErrNilFunc, []string{`Process "p"`}},

		{"two operators with one name", func(b *stream.Builder) {
			s := src(b, "in")
			stream.Filter(s, func(string, string) bool { return true }, stream.Named("x"))
			stream.MapValues(s, byValue, stream.Named("x"))
		}, stream.ErrNameClash, []string{`"x"`, "Filter", "MapValues"}},
		{"Named clashes with a generated name", func(b *stream.Builder) {
			s := src(b, "in")                                           // source-0
			stream.Filter(s, func(string, string) bool { return true }) // filter-1
			stream.MapValues(s, byValue, stream.Named("filter-1"))
		}, stream.ErrNameClash, []string{`Named("filter-1")`, "generated", "Filter"}},
		{"two sources with one name make two stages with one name", func(b *stream.Builder) {
			src(b, "a", stream.Named("read"))
			src(b, "b", stream.Named("read"))
		}, stream.ErrNameClash, []string{`"read"`}},
		{"sink topic is an internal topic", func(b *stream.Builder) {
			g := stream.GroupBy(src(b, "in"), byValue, codec.String{}, codec.String{}, stream.Named("g"))
			stream.To(stream.Count(g, stream.Named("n")).ToStream(), "g-repartition", codec.String{}, codec.Int64{}, stream.Named("w"))
		}, stream.ErrNameClash, []string{`To "w"`, `"g-repartition"`, `GroupBy "g"`, "internal"}},
		{"sink topic is a changelog", func(b *stream.Builder) {
			n := stream.Count(stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{}), stream.Named("n"))
			stream.To(n.ToStream(), "n-changelog", codec.String{}, codec.Int64{}, stream.Named("w"))
		}, stream.ErrNameClash, []string{`To "w"`, `"n-changelog"`, `store "n"`}},
		{"topic read by two sources", func(b *stream.Builder) {
			src(b, "in", stream.Named("r1"))
			src(b, "in", stream.Named("r2"))
		}, stream.ErrNameClash, []string{`topic "in"`, `Source "r1"`, `Source "r2"`}},

		{"store of another builder", func(b *stream.Builder) {
			other := stream.DeclareStore(stream.NewBuilder(), "visits", codec.String{}, codec.Int64{})
			stream.Process(src(b, "in"), noop, stream.Uses(other), stream.Named("p"))
		}, stream.ErrForeignBuilder, []string{`Process "p"`, `"visits"`}},
		{"output of another builder", func(b *stream.Builder) {
			other := stream.DeclareOutput(stream.NewBuilder(), "alerts", codec.String{}, codec.String{})
			stream.Process(src(b, "in"), noop, stream.EmitsTo(other), stream.Named("p"))
		}, stream.ErrForeignBuilder, []string{`Process "p"`, `"alerts"`}},

		{"Named empty", func(b *stream.Builder) {
			stream.MapValues(src(b, "in"), byValue, stream.Named(""))
		}, stream.ErrEmptyName, []string{"MapValues", "Named", "empty"}},
		{"empty source topic", func(b *stream.Builder) {
			src(b, "", stream.Named("read"))
		}, stream.ErrEmptyName, []string{`Source "read"`, "topic"}},
		{"empty store name", func(b *stream.Builder) {
			src(b, "in")
			stream.DeclareStore(b, "", codec.String{}, codec.String{})
		}, stream.ErrEmptyName, []string{"DeclareStore", "store name"}},
		{"invalid name", func(b *stream.Builder) {
			stream.Count(stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{}), stream.Named("word counts"))
		}, stream.ErrInvalidName, []string{`"word counts"`, `' '`}},
		{"invalid topic", func(b *stream.Builder) {
			stream.To(src(b, "in"), "out/x", codec.String{}, codec.String{})
		}, stream.ErrInvalidName, []string{`"out/x"`}},

		{"split without branches", func(b *stream.Builder) {
			stream.Split(src(b, "in"), nil, stream.Named("route"))
		}, stream.ErrInvalidArgument, []string{`Split "route"`, "no branches"}},
		{"split branch without predicate", func(b *stream.Builder) {
			stream.Split(src(b, "in"), []stream.Branch[string, string]{
				{Pred: func(string, string) bool { return true }}, {Name: "late"},
			}, stream.Named("route"))
		}, stream.ErrInvalidArgument, []string{`Split "route"`, "branch 1", `Branch "late"`, "nil predicate"}},
		{"split branch names clash", func(b *stream.Builder) {
			p := func(string, string) bool { return true }
			stream.Split(src(b, "in"), []stream.Branch[string, string]{{Name: "x", Pred: p}, {Name: "x", Pred: p}})
		}, stream.ErrNameClash, []string{`"x"`, "Branch"}},
		{"merge of one stream", func(b *stream.Builder) {
			stream.Merge([]stream.Stream[string, string]{src(b, "in")}, stream.Named("m"))
		}, stream.ErrInvalidArgument, []string{`Merge "m"`, "two or more"}},
		{"merge of streams of two builders", func(b *stream.Builder) {
			other := src(stream.NewBuilder(), "other", stream.Named("elsewhere"))
			stream.Merge([]stream.Stream[string, string]{src(b, "in"), other}, stream.Named("m"))
		}, stream.ErrForeignBuilder, []string{`Merge "m"`, `Source "elsewhere"`}},
		{"Partitions(0)", func(b *stream.Builder) {
			stream.Repartition(src(b, "in"), codec.String{}, codec.String{}, stream.Named("r"), stream.Partitions(0))
		}, stream.ErrInvalidArgument, []string{`Repartition "r"`, "Partitions(0)"}},
		{"one stage reading internal topics with different Partitions", func(b *stream.Builder) {
			in := src(b, "in")
			r1 := stream.Repartition(in, codec.String{}, codec.String{}, stream.Named("r1"), stream.Partitions(2))
			r2 := stream.Repartition(in, codec.String{}, codec.String{}, stream.Named("r2"), stream.Partitions(3))
			stream.To(stream.Merge([]stream.Stream[string, string]{r1, r2}), "out", codec.String{}, codec.String{})
		}, stream.ErrNotCoPartitioned, []string{`"r1-repartition" has 2 partitions`, `"r2-repartition" has 3`}},
		{"join of a re-keyed stream", func(b *stream.Builder) {
			s := stream.Map(src(b, "in"), func(k, v string) (string, string) { return v, k }, stream.Named("swap"))
			t := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
			stream.Join(s, t, func(_, v, u string) string { return v }, stream.Named("j"))
		}, stream.ErrNotCoPartitioned, []string{`Join "j"`, `Map "swap"`, `SourceTable "users"`, "stream.Repartition"}},
		{"join of sides with different key codecs", func(b *stream.Builder) {
			s := stream.Source(b, "in", codec.Int64Text{}, codec.String{})
			t := stream.SourceTable(b, "users", codec.Int64{}, codec.String{}, stream.Named("users"))
			stream.LeftJoin(s, t, func(_ int64, v, u string, _ bool) string { return v }, stream.Named("j"))
		}, stream.ErrNotCoPartitioned, []string{`LeftJoin "j"`, "codec.Int64Text", "codec.Int64", `SourceTable "users"`}},
		{"table join of tables with different key codecs", func(b *stream.Builder) {
			t1 := stream.SourceTable(b, "a", codec.JSON[string]{}, codec.String{}, stream.Named("a"))
			t2 := stream.SourceTable(b, "b", codec.String{}, codec.String{}, stream.Named("b"))
			stream.TableJoin(t1, t2, func(_, x, y string) string { return x + y }, stream.Named("j"))
		}, stream.ErrNotCoPartitioned, []string{`TableJoin "j"`, `SourceTable "a"`, `SourceTable "b"`}},
		{"join with a table of another builder", func(b *stream.Builder) {
			t := stream.SourceTable(stream.NewBuilder(), "users", codec.String{}, codec.String{}, stream.Named("users"))
			stream.Join(src(b, "in"), t, func(_, v, u string) string { return v }, stream.Named("j"))
		}, stream.ErrForeignBuilder, []string{`Join "j"`, `SourceTable "users"`}},
		{"join with the zero table", func(b *stream.Builder) {
			stream.Join(src(b, "in"), stream.Table[string, string]{}, func(_, v, u string) string { return v }, stream.Named("j"))
		}, stream.ErrInvalidArgument, []string{`Join "j"`, "zero Table"}},
		{"nil join function", func(b *stream.Builder) {
			t := stream.SourceTable(b, "users", codec.String{}, codec.String{})
			stream.Join[string, string, string, string](src(b, "in"), t, nil, stream.Named("j"))
		}, stream.ErrNilFunc, []string{`Join "j"`}},
		{"nil subtractor", func(b *stream.Builder) {
			t := stream.SourceTable(b, "users", codec.String{}, codec.String{})
			g := stream.TableGroupBy(t, func(k, v string) (string, string) { return v, k }, codec.String{}, codec.String{})
			stream.TableAggregate(g, func() int64 { return 0 }, func(string, string, int64) int64 { return 1 }, nil, codec.Int64{}, stream.Named("agg"))
		}, stream.ErrNilFunc, []string{`TableAggregate "agg"`, "subtract"}},
		{"undeclared loop: To a topic the stage reads", func(b *stream.Builder) {
			stream.To(stream.MapValues(src(b, "work", stream.Named("w")), byValue), "work", codec.String{}, codec.String{}, stream.Named("again"))
		}, stream.ErrCycle, []string{`topic "work"`, `To "again"`, "stream.DeclareLoop"}},
		{"loop of another builder", func(b *stream.Builder) {
			l := stream.DeclareLoop(stream.NewBuilder(), codec.String{}, codec.String{}, stream.Named("l"))
			stream.LoopTo(src(b, "in"), l, stream.Named("back"))
		}, stream.ErrForeignBuilder, []string{`LoopTo "back"`, `Loop "l"`}},
		{"loop topic used as a user topic", func(b *stream.Builder) {
			l := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("l"))
			stream.LoopTo(src(b, "in"), l)
			stream.To(l.Stream(), "l-loop", codec.String{}, codec.String{}, stream.Named("w"))
		}, stream.ErrNameClash, []string{`To "w"`, `"l-loop"`, `loop topic of Loop "l"`}},
		{"a loop written from another stage", func(b *stream.Builder) {
			// The writer joins the loop's stage, which then reads its
			// own repartition output: an accidental cycle.
			l := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("l"))
			g := stream.GroupByKey(stream.SelectKey(l.Stream(), byValue), codec.String{}, codec.String{}, stream.Named("g"))
			stream.LoopTo(stream.MapValues(stream.Count(g, stream.Named("n")).ToStream(), func(string, int64) string { return "" }), l)
		}, stream.ErrCycle, []string{`repartition topic "g-repartition"`, "loop's stage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := stream.NewBuilder()
			tt.build(b)
			topo, err := b.Build()
			if err == nil {
				t.Fatalf("Build succeeded:\n%v", topo)
			}
			t.Log(err)
			if topo != nil {
				t.Error("Build returned a topology with an error")
			}
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Build error %q does not match %v", err, tt.kind)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Build error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Build reports every problem at once.
func TestBuildJoinsErrors(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source[string, string](b, "in", nil, codec.String{}, stream.Named(""))
	stream.To(s, "in", codec.String{}, codec.String{})
	_, err := b.Build()
	for _, kind := range []error{stream.ErrNilCodec, stream.ErrEmptyName, stream.ErrCycle} {
		if !errors.Is(err, kind) {
			t.Errorf("Build error %q does not match %v", err, kind)
		}
	}
	if errors.Is(err, stream.ErrNoSource) {
		t.Errorf("Build error %q matches ErrNoSource", err)
	}
}

func TestBuildTwice(t *testing.T) {
	b := stream.NewBuilder()
	s := src(b, "lines", stream.Named("read"))
	stream.To(s, "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	desc := topo.String()

	// Operators added after Build change nothing in the built topology.
	stream.To(s, "more", codec.String{}, codec.String{})
	stream.DeclareStore(b, "late", codec.String{}, codec.String{})
	task := newTask(0)
	if err := topology.Of(topo).Stages[0].Program("app")(task, rec("lines", 0, 0, "k", "v")); err != nil {
		t.Fatal(err)
	}
	if got := kvs(task.emits); !equalKVs(got, []kv{{"out", "k", "v"}}) {
		t.Fatalf("emits %v after a late To; want only the original sink", got)
	}
	if topo.String() != desc || len(topology.Of(topo).Stages[0].Outputs) != 1 {
		t.Fatal("the built topology changed after Build")
	}

	_, err = b.Build()
	if !errors.Is(err, stream.ErrBuilt) {
		t.Fatalf("second Build: %v, want ErrBuilt", err)
	}
	if !strings.Contains(err.Error(), `To "to-2"`) || !strings.Contains(err.Error(), `DeclareStore "late"`) {
		t.Errorf("second Build error %q does not name the late calls", err)
	}
}

func TestValidate(t *testing.T) {
	b := stream.NewBuilder()
	s := src(b, "in", stream.Named("read"))
	n := stream.Count(stream.GroupBy(s, byValue, codec.String{}, codec.String{}, stream.Named("g")), stream.Named("n"))
	stream.To(n.ToStream(), "app-g-repartition", codec.String{}, codec.Int64{})
	stream.To(s, "app-n-changelog", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.Validate("other"); err != nil {
		t.Errorf("Validate(other): %v", err)
	}
	err = topo.Validate("app")
	if !errors.Is(err, stream.ErrNameClash) || !strings.Contains(err.Error(), `"app-g-repartition"`) ||
		!strings.Contains(err.Error(), `"app-n-changelog"`) {
		t.Errorf("Validate(app) = %v, want name clashes for both topics", err)
	}
	if err := topo.Validate(""); !errors.Is(err, stream.ErrEmptyName) {
		t.Errorf("Validate(\"\") = %v, want ErrEmptyName", err)
	}
	if err := topo.Validate("my app"); !errors.Is(err, stream.ErrInvalidName) {
		t.Errorf("Validate(\"my app\") = %v, want ErrInvalidName", err)
	}
	if err := topo.Validate(strings.Repeat("a", 240)); !errors.Is(err, stream.ErrInvalidName) || !strings.Contains(err.Error(), "249") {
		t.Errorf("Validate(long) = %v, want ErrInvalidName about the length", err)
	}
}

// A declared loop is accepted; the same topology with the loop written to a
// user topic the stage reads is a cycle (see TestBuildErrors).
func TestBuildAcceptsDeclaredLoop(t *testing.T) {
	b := stream.NewBuilder()
	work := src(b, "work", stream.Named("w"))
	loop := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("again"))
	stream.LoopTo(stream.Merge([]stream.Stream[string, string]{work, loop.Stream()}), loop)
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if !strings.Contains(topo.String(), `Loop "again" <- again-loop (internal)`) || !strings.Contains(topo.String(), `LoopTo "loopto-3" -> again-loop (internal)`) {
		t.Errorf("description:\n%v", topo)
	}
	if err := topo.Validate("app"); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
