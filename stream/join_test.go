package stream_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// enrich joins page views (user -> page) with a table of users (user ->
// country).
func enrich(t *testing.T, left bool, opts ...streamtest.Opt) (*streamtest.Driver, *stream.Topology) {
	b := stream.NewBuilder()
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	var out stream.Stream[string, string]
	if left {
		out = stream.LeftJoin(views, users, func(user, page, country string, ok bool) string {
			if !ok {
				country = "?"
			}
			return page + "@" + country
		}, stream.Named("enrich"))
	} else {
		out = stream.Join(views, users, func(user, page, country string) string { return page + "@" + country },
			stream.Named("enrich"))
	}
	stream.To(out, "enriched", codec.String{}, codec.String{})
	return drive(t, b, opts...)
}

func TestJoinStreamTable(t *testing.T) {
	d, topo := enrich(t, false, streamtest.Partitions(4))
	stages := topology.Of(topo).Stages
	if len(stages) != 1 || len(stages[0].Inputs) != 2 || len(stages[0].Stores) != 1 {
		t.Fatalf("want one stage reading views and users with the users store:\n%v", topo)
	}
	for _, want := range []string{`Join "enrich" [SourceTable "users"]`, `Join "enrich" (see above)`} {
		if !strings.Contains(topo.String(), want) {
			t.Errorf("description lacks %s:\n%v", want, topo)
		}
	}
	views, users := strIn(d, "views"), strIn(d, "users")
	views.Pipe("ann", "/home") // ann unknown yet: dropped
	users.Pipe("ann", "de")    // table updates emit nothing
	views.Pipe("ann", "/shop")
	users.Pipe("ann", "at")
	views.Pipe("ann", "/cart")
	users.PipeTombstone("ann")
	views.Pipe("ann", "/bye")
	wantKVs(t, strOut(d, "enriched"), "ann=/shop@de ann=/cart@at")
}

func TestLeftJoinStreamTable(t *testing.T) {
	d, _ := enrich(t, true)
	views, users := strIn(d, "views"), strIn(d, "users")
	views.Pipe("ann", "/home")
	users.Pipe("ann", "de")
	views.Pipe("ann", "/shop")
	wantKVs(t, strOut(d, "enriched"), "ann=/home@? ann=/shop@de")
}

// The stream and the table of a join must be co-partitioned; the driver,
// like the runtime, names both topics and their partition counts.
func TestJoinCoPartitionCheck(t *testing.T) {
	b := stream.NewBuilder()
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	stream.To(stream.Join(views, users, func(_, v, c string) string { return v + c }), "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	err = streamtest.Validate(topo, streamtest.TopicPartitions("views", 6), streamtest.TopicPartitions("users", 4))
	if err == nil || !strings.Contains(err.Error(), "stage views reads topics that are not co-partitioned: views has 6 partitions, users has 4") {
		t.Fatalf("Validate = %v", err)
	}
}

// A re-keyed stream is joined after a Repartition.
func TestJoinAfterRepartition(t *testing.T) {
	b := stream.NewBuilder()
	orders := stream.Source(b, "orders", codec.String{}, codec.String{}, stream.Named("orders")) // order id -> user
	byUser := stream.Repartition(stream.SelectKey(orders, func(id, user string) string { return user }),
		codec.String{}, codec.String{}, stream.Named("by-user"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	stream.To(stream.Join(byUser, users, func(user, _, country string) string { return country }), "out", codec.String{}, codec.String{})
	d, topo := drive(t, b, streamtest.Partitions(3))
	if got := stageNames(topo); len(got) != 2 || got[1] != "by-user" {
		t.Fatalf("stages %v, want orders and by-user (with the users table)", got)
	}
	strIn(d, "users").Pipe("ann", "de")
	strIn(d, "orders").Pipe("o1", "ann")
	wantKVs(t, strOut(d, "out"), "ann=de")
}

// Joins look keys up in non-materialized tables through their functions.
func TestJoinDerivedTable(t *testing.T) {
	b := stream.NewBuilder()
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	eu := stream.TableFilter(users, func(_, c string) bool { return c != "us" })
	upper := stream.TableMapValues(eu, func(_, c string) string { return strings.ToUpper(c) })
	stream.To(stream.Join(views, upper, func(_, page, c string) string { return page + "@" + c }), "out", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	strIn(d, "users").Pipe("ann", "de")
	strIn(d, "users").Pipe("bob", "us")
	strIn(d, "views").Pipe("ann", "/a")
	strIn(d, "views").Pipe("bob", "/b")
	wantKVs(t, strOut(d, "out"), "ann=/a@DE")
}

func tableJoin(t *testing.T, left bool) *streamtest.Driver {
	b := stream.NewBuilder()
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	plans := stream.SourceTable(b, "plans", codec.String{}, codec.String{}, stream.Named("plans"))
	var j stream.Table[string, string]
	if left {
		j = stream.TableLeftJoin(users, plans, func(_, c, p string, ok bool) string {
			if !ok {
				p = "free"
			}
			return c + "/" + p
		}, stream.Named("join"))
	} else {
		j = stream.TableJoin(users, plans, func(_, c, p string) string { return c + "/" + p }, stream.Named("join"))
	}
	stream.TableTo(j, "out", codec.String{}, codec.String{})
	stream.To(j.Changes(), "changes", codec.String{}, codec.JSON[stream.Change[string]]{})
	d, _ := drive(t, b)
	return d
}

func TestTableJoin(t *testing.T) {
	d := tableJoin(t, false)
	users, plans := strIn(d, "users"), strIn(d, "plans")
	users.Pipe("ann", "de")       // no plan: nothing
	plans.Pipe("ann", "pro")      // now both: de/pro
	users.Pipe("ann", "at")       // left update: at/pro
	plans.Pipe("ann", "team")     // right update: at/team
	plans.Pipe("bob", "pro")      // no user: nothing
	plans.PipeTombstone("ann")    // right deleted: deletion
	users.PipeTombstone("ann")    // already no result: nothing
	users.Pipe("bob", "fr")       // fr/pro
	users.PipeTombstone("bob")    // left deleted: deletion
	plans.PipeTombstone("nobody") // nothing
	if got, want := records(strOut(d, "out").ReadAll()), "ann=de/pro ann=at/pro ann=at/team ann=<nil> bob=fr/pro bob=<nil>"; got != want {
		t.Errorf("TableJoin wrote %q, want %q", got, want)
	}
	ch := streamtest.NewOutput(d, "changes", codec.String{}, codec.JSON[stream.Change[string]]{})
	if got, want := changes(ch.ReadAll()), "ann:-->de/pro ann:de/pro->at/pro ann:at/pro->at/team ann:at/team->- bob:-->fr/pro bob:fr/pro->-"; got != want {
		t.Errorf("TableJoin changes %q, want %q", got, want)
	}
}

func TestTableLeftJoin(t *testing.T) {
	d := tableJoin(t, true)
	users, plans := strIn(d, "users"), strIn(d, "plans")
	users.Pipe("ann", "de")    // de/free
	plans.Pipe("ann", "pro")   // de/pro
	plans.PipeTombstone("ann") // back to de/free
	plans.Pipe("bob", "pro")   // no user: nothing
	users.PipeTombstone("ann") // deletion
	if got, want := records(strOut(d, "out").ReadAll()), "ann=de/free ann=de/pro ann=de/free ann=<nil>"; got != want {
		t.Errorf("TableLeftJoin wrote %q, want %q", got, want)
	}
	ch := streamtest.NewOutput(d, "changes", codec.String{}, codec.JSON[stream.Change[string]]{})
	if got, want := changes(ch.ReadAll()), "ann:-->de/free ann:de/free->de/pro ann:de/pro->de/free ann:de/free->-"; got != want {
		t.Errorf("TableLeftJoin changes %q, want %q", got, want)
	}
}

// A join of an aggregation's table with a stream read from the same
// repartition stage.
func TestJoinAggregatedTable(t *testing.T) {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks")) // user -> page
	counts := stream.Count(stream.GroupByKey(clicks, codec.String{}, codec.String{}), stream.Named("counts"))
	stream.To(stream.Join(clicks, counts, func(_, page string, n int64) string { return fmt.Sprintf("%s#%d", page, n) }),
		"numbered", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	in := strIn(d, "clicks")
	in.Pipe("ann", "/a")
	in.Pipe("ann", "/b")
	// Count was declared first, so it updates before the join looks up.
	wantKVs(t, strOut(d, "numbered"), "ann=/a#1 ann=/b#2")
}
