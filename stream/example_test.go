package stream_test

import (
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
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

// exampleT is what the examples give the test driver in place of a
// *testing.T.
type exampleT struct{}

func (exampleT) Helper() {}
func (exampleT) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// Route records to the first branch whose predicate holds; the rest go to
// the default branch.
func ExampleSplit() {
	b := stream.NewBuilder()
	orders := stream.Source(b, "orders", codec.String{}, codec.Int64Text{}, stream.Named("orders"))
	branches, rest := stream.Split(orders, []stream.Branch[string, int64]{
		{Name: "large", Pred: func(_ string, cents int64) bool { return cents >= 100_00 }},
		{Name: "free", Pred: func(_ string, cents int64) bool { return cents == 0 }},
	}, stream.Named("route"))
	stream.To(branches[0], "large-orders", codec.String{}, codec.Int64Text{})
	stream.To(branches[1], "free-orders", codec.String{}, codec.Int64Text{})
	stream.To(rest, "other-orders", codec.String{}, codec.Int64Text{})
	topo, _ := b.Build()

	d := streamtest.New(exampleT{}, topo)
	in := streamtest.NewInput(d, "orders", codec.String{}, codec.Int64Text{})
	in.Pipe("o1", 250_00)
	in.Pipe("o2", 0)
	in.Pipe("o3", 12_50)
	for _, topic := range []string{"large-orders", "free-orders", "other-orders"} {
		out := streamtest.NewOutput(d, topic, codec.String{}, codec.Int64Text{})
		fmt.Println(topic, out.ReadKeyValues())
	}
	// Output:
	// large-orders [{o1 25000}]
	// free-orders [{o2 0}]
	// other-orders [{o3 1250}]
}

// Enrich a stream of page views with a table of users: the stream and the
// table's topic must be co-partitioned, and both run in one stage.
func ExampleJoin() {
	b := stream.NewBuilder()
	views := stream.Source(b, "page-views", codec.String{}, codec.String{}, stream.Named("views")) // user -> page
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users")) // user -> country
	withCountry := stream.LeftJoin(views, users, func(user, page, country string, known bool) string {
		if !known {
			country = "unknown"
		}
		return page + " from " + country
	}, stream.Named("enrich"))
	stream.To(withCountry, "enriched-views", codec.String{}, codec.String{})
	topo, _ := b.Build()
	fmt.Print(topo)

	d := streamtest.New(exampleT{}, topo)
	viewsIn := streamtest.NewInput(d, "page-views", codec.String{}, codec.String{})
	usersIn := streamtest.NewInput(d, "users", codec.String{}, codec.String{})
	viewsIn.Pipe("ann", "/home")
	usersIn.Pipe("ann", "de")
	viewsIn.Pipe("ann", "/pricing")
	for _, kv := range streamtest.NewOutput(d, "enriched-views", codec.String{}, codec.String{}).ReadKeyValues() {
		fmt.Println(kv.Key, kv.Value)
	}
	// Output:
	// Topology: 1 stage, 1 store
	// Stage "views"
	//   inputs:  page-views, users
	//   outputs: enriched-views
	//   stores:  users
	//   Source "views" <- page-views
	//     LeftJoin "enrich" [SourceTable "users"]
	//       To "to-3" -> enriched-views
	//   SourceTable "users" <- users [store users]
	//     LeftJoin "enrich" (see above)
	// ann /home from unknown
	// ann /pricing from de
}

// Count users per country from a table of users: when a user moves, the old
// country loses them and the new one gains them.
func ExampleTableGroupBy() {
	b := stream.NewBuilder()
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	byCountry := stream.TableGroupBy(users, func(user, country string) (string, string) { return country, user },
		codec.String{}, codec.String{}, stream.Named("by-country"))
	perCountry := stream.TableCount(byCountry, stream.Named("users-per-country"))
	stream.TableTo(perCountry, "users-per-country", codec.String{}, codec.Int64Text{})
	topo, _ := b.Build()

	d := streamtest.New(exampleT{}, topo)
	in := streamtest.NewInput(d, "users", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "users-per-country", codec.String{}, codec.Int64Text{})
	in.Pipe("ann", "de")
	in.Pipe("bob", "de")
	in.Pipe("ann", "fr") // ann moves
	in.PipeTombstone("bob")
	for _, r := range out.ReadAll() {
		fmt.Println(r.Key, r.Value)
	}
	// Output:
	// de 1
	// de 2
	// de 1
	// fr 1
	// de 0
}

// A loop: records sent to it come back to the same stage, in the task of
// their key.
func ExampleDeclareLoop() {
	b := stream.NewBuilder()
	posts := stream.Source(b, "posts", codec.String{}, codec.String{}, stream.Named("posts")) // post -> "user1,user2"
	notify := stream.DeclareLoop(b, codec.String{}, codec.String{}, stream.Named("notify"))   // user -> post
	perUser := stream.FlatMap(posts, func(post, users string) []stream.KeyValue[string, string] {
		var out []stream.KeyValue[string, string]
		for _, u := range strings.Split(users, ",") {
			out = append(out, stream.KeyValue[string, string]{Key: u, Value: post})
		}
		return out
	})
	stream.LoopTo(perUser, notify)
	stream.To(notify.Stream(), "notifications", codec.String{}, codec.String{})
	topo, _ := b.Build()
	fmt.Print(topo)

	d := streamtest.New(exampleT{}, topo)
	streamtest.NewInput(d, "posts", codec.String{}, codec.String{}).Pipe("p1", "ann,bob")
	fmt.Println(streamtest.NewOutput(d, "notifications", codec.String{}, codec.String{}).ReadKeyValues())
	// Output:
	// Topology: 1 stage, 0 stores
	// Stage "posts"
	//   inputs:  posts, notify-loop (internal)
	//   outputs: notify-loop (internal), notifications
	//   Source "posts" <- posts
	//     FlatMap "flatmap-2"
	//       LoopTo "loopto-3" -> notify-loop (internal)
	//   Loop "notify" <- notify-loop (internal)
	//     To "to-4" -> notifications
	// [{ann p1} {bob p1}]
}

// Set headers on records; they travel downstream and into output topics.
func ExampleWithHeaders() {
	b := stream.NewBuilder()
	in := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	tagged := stream.WithHeaders(in, func(k, v string, hs stream.Headers) stream.Headers {
		return hs.Set("content-length", []byte(fmt.Sprint(len(v))))
	})
	stream.To(tagged, "out", codec.String{}, codec.String{})
	topo, _ := b.Build()

	d := streamtest.New(exampleT{}, topo)
	streamtest.NewInput(d, "in", codec.String{}, codec.String{}).Pipe("k", "hello")
	r, _ := streamtest.NewOutput(d, "out", codec.String{}, codec.String{}).Read()
	v, _ := r.Headers.Get("content-length")
	fmt.Println(r.Value, string(v))
	// Output:
	// hello 5
}
