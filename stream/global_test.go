package stream_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// order is a value of the orders topic: keyed by order id, it names the
// user who placed it.
type order struct {
	User  string
	Cents int64
}

// ordersWithCountry joins orders (keyed by order id) with a global table of
// users (user -> country): the order's key is not the table's key, so a
// co-partitioned Join could not do it without a repartition.
func ordersWithCountry(t *testing.T, left bool) (*stream.Builder, stream.Stream[string, string]) {
	b := stream.NewBuilder()
	orders := stream.Source(b, "orders", codec.String{}, codec.JSON[order]{}, stream.Named("orders"))
	users := stream.SourceGlobalTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	userOf := func(_ string, o order) string { return o.User }
	if left {
		return b, stream.GlobalLeftJoin(orders, users, userOf, func(id string, o order, country string, ok bool) string {
			if !ok {
				country = "?"
			}
			return fmt.Sprintf("%s:%d@%s", o.User, o.Cents, country)
		}, stream.Named("with-country"))
	}
	return b, stream.GlobalJoin(orders, users, userOf, func(id string, o order, country string) string {
		return fmt.Sprintf("%s:%d@%s", o.User, o.Cents, country)
	}, stream.Named("with-country"))
}

func TestGlobalJoinDescription(t *testing.T) {
	b, out := ordersWithCountry(t, false)
	stream.To(out, "out", codec.String{}, codec.String{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	stages := topology.Of(topo).Stages
	if len(stages) != 1 || len(stages[0].Inputs) != 1 || stages[0].Inputs[0].Name != "orders" || len(stages[0].Stores) != 0 {
		t.Fatalf("want one stage reading only orders, without stores:\n%v", topo)
	}
	gs := topology.Of(topo).Globals
	if len(gs) != 1 || gs[0] != (topology.Global{Name: "users", Topic: "users"}) {
		t.Fatalf("GlobalTables() = %+v", gs)
	}
	want := `Topology: 1 stage, 0 stores, 1 global table
Stage "orders"
  inputs:  orders
  outputs: out
  globals: users
  Source "orders" <- orders
    GlobalJoin "with-country" [global SourceGlobalTable "users"]
      To "write" -> out
Global table "users" <- users (a full copy on every instance)
  read by: GlobalJoin "with-country"
`
	if got := topo.String(); got != want {
		t.Errorf("description:\n%s\nwant:\n%s", got, want)
	}
	for _, s := range []string{`"topic:users" -> "global:users"`, `"global:users" [shape=cylinder, style=dashed, label="global table users"]`, `"global:users" -> "op2" [style=dotted]`} {
		if !strings.Contains(topo.DOT(), s) {
			t.Errorf("DOT lacks %s:\n%s", s, topo.DOT())
		}
	}
}

func TestGlobalTableGeneratedNameWarning(t *testing.T) {
	b := stream.NewBuilder()
	g := stream.SourceGlobalTable(b, "users", codec.String{}, codec.String{})
	s := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	stream.To(stream.GlobalJoin(s, g, func(k, _ string) string { return k }, func(_, v, c string) string { return v + c }, stream.Named("j")),
		"out", codec.String{}, codec.String{}, stream.Named("w"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(topo.String(), `WARNING: global table "sourceglobaltable-0" has a generated name`) {
		t.Errorf("no warning about the generated name:\n%v", topo)
	}
}

func TestGlobalBuildErrors(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	g := stream.SourceGlobalTable[string, string](b, "users", nil, codec.String{}, stream.Named("users"))
	stream.SourceGlobalTable(b, "users", codec.String{}, codec.String{}, stream.Named("users-again"))
	key := func(k, _ string) string { return k }
	join := func(_, v, c string) string { return v + c }
	stream.GlobalJoin(s, g, nil, join, stream.Named("no-key"))
	stream.GlobalJoin[string, string, string, string, string](s, g, key, nil, stream.Named("no-fn"))
	stream.GlobalJoin(s, stream.GlobalTable[string, string]{}, key, join, stream.Named("zero"))
	other := stream.SourceGlobalTable(stream.NewBuilder(), "x", codec.String{}, codec.String{})
	stream.GlobalLeftJoin(s, other, key, func(_, v, c string, _ bool) string { return v + c }, stream.Named("foreign"))
	_, err := b.Build()
	for _, want := range []struct {
		kind error
		text string
	}{
		{stream.ErrNilCodec, `SourceGlobalTable "users": key codec is nil`},
		{stream.ErrNameClash, `topic "users" is read by SourceGlobalTable "users" and by SourceGlobalTable "users-again"`},
		{stream.ErrNilFunc, `GlobalJoin "no-key": key function is nil`},
		{stream.ErrNilFunc, `GlobalJoin "no-fn": join function is nil`},
		{stream.ErrInvalidArgument, `GlobalJoin "zero": the global table is the zero GlobalTable`},
		{stream.ErrForeignBuilder, `GlobalLeftJoin "foreign": the global table SourceGlobalTable "sourceglobaltable-0" belongs to another Builder`},
	} {
		if !errors.Is(err, want.kind) || !strings.Contains(fmt.Sprint(err), want.text) {
			t.Errorf("Build error lacks %v: %s\n%v", want.kind, want.text, err)
		}
	}

	// A global table alone reads no topic a stage processes.
	b = stream.NewBuilder()
	stream.SourceGlobalTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	if _, err := b.Build(); !errors.Is(err, stream.ErrNoSource) {
		t.Errorf("Build of a topology of one global table: %v, want ErrNoSource", err)
	}
}

// A stream re-keyed since it was read joins a global table without a
// repartition: the join keeps its key and its stage.
func TestGlobalJoinNeedsNoRepartition(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.SelectKey(stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in")), func(_, v string) string { return v })
	g := stream.SourceGlobalTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	j := stream.GlobalJoin(s, g, func(k, _ string) string { return k }, func(k, v, c string) string { return c })
	stream.To(j, "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topology.Of(topo).Stages); n != 1 {
		t.Fatalf("%d stages, want 1:\n%v", n, topo)
	}
}

func TestGlobalJoinDriver(t *testing.T) {
	b, out := ordersWithCountry(t, false)
	stream.To(out, "out", codec.String{}, codec.String{})
	// Orders on 4 partitions, users on 1: no co-partitioning needed.
	d, _ := drive(t, b, streamtest.TopicPartitions("orders", 4))
	orders := streamtest.NewInput(d, "orders", codec.String{}, codec.JSON[order]{})
	users := strIn(d, "users")
	orders.Pipe("o1", order{"ann", 100}) // ann unknown: dropped
	users.Pipe("ann", "de")
	users.Pipe("bob", "fr")
	for i, u := range []string{"ann", "bob", "cid", "ann"} {
		orders.Pipe(fmt.Sprintf("o%d", i+2), order{u, int64(i)})
	}
	users.PipeTombstone("ann")
	orders.Pipe("o6", order{"ann", 9})
	wantKVs(t, strOut(d, "out"), "o2=ann:0@de o3=bob:1@fr o5=ann:3@de")
	if n := streamtest.OpenGlobalTable(d, "users", codec.String{}, codec.String{}).Len(); n != 1 {
		t.Errorf("global table holds %d keys after the tombstone, want 1", n)
	}
}

func TestGlobalLeftJoinDriver(t *testing.T) {
	b, out := ordersWithCountry(t, true)
	stream.To(out, "out", codec.String{}, codec.String{})
	d, _ := drive(t, b, streamtest.TopicPartitions("orders", 3), streamtest.TopicPartitions("users", 2))
	orders := streamtest.NewInput(d, "orders", codec.String{}, codec.JSON[order]{})
	users := strIn(d, "users")
	orders.Pipe("o1", order{"ann", 1})
	users.Pipe("ann", "de")
	orders.Pipe("o2", order{"ann", 2})
	users.Pipe("ann", "at")
	orders.Pipe("o3", order{"ann", 3})
	users.PipeTombstone("ann")
	orders.Pipe("o4", order{"ann", 4})
	wantKVs(t, strOut(d, "out"), "o1=ann:1@? o2=ann:2@de o3=ann:3@at o4=ann:4@?")
}

// A value of the global topic that does not decode fails the lookup: the
// looking-up record goes to the error policy and leaves no effect.
func TestGlobalJoinDecodeError(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	g := stream.SourceGlobalTable(b, "limits", codec.String{}, codec.Int64Text{}, stream.Named("limits"))
	stream.To(stream.GlobalJoin(s, g, func(_, v string) string { return v }, func(k, v string, n int64) int64 { return n }),
		"out", codec.String{}, codec.Int64Text{})
	d, _ := drive(t, b)
	strIn(d, "limits").Pipe("x", "not a number")
	err := strIn(d, "in").Send(streamtest.Record[string, string]{Key: "k", Value: "x"})
	var ce *stream.CodecError
	if !errors.As(err, &ce) || !errors.Is(err, codec.ErrDecode) || ce.Target != `global table "limits"` || ce.Operator != `GlobalJoin "globaljoin-2"` {
		t.Fatalf("Send = %v, want a decode error of the global table's value", err)
	}
	if n := len(d.Messages("out")); n != 0 {
		t.Errorf("%d outputs from a failed record", n)
	}
}

// Lookup reads a global table from a Process function (goka's ctx.Lookup),
// and a stage may write the global table's topic itself: the driver applies
// what the stage emits to the global table at once.
func TestGlobalLookupFromProcess(t *testing.T) {
	b := stream.NewBuilder()
	limits := stream.SourceGlobalTable(b, "limits", codec.String{}, codec.Int64Text{}, stream.Named("limits"))
	set := stream.Source(b, "set-limit", codec.String{}, codec.Int64Text{}, stream.Named("set-limit"))
	stream.To(set, "limits", codec.String{}, codec.Int64Text{}, stream.Named("write-limits"))
	spend := stream.Source(b, "spend", codec.String{}, codec.Int64Text{}, stream.Named("spend"))
	alerts := stream.DeclareOutput(b, "alerts", codec.String{}, codec.String{})
	stream.Process(spend, func(h *stream.Handle, r stream.Record[string, int64]) error {
		limit, ok, err := stream.Lookup(h, limits, r.Key)
		if err != nil || !ok {
			return err
		}
		if r.Value > limit {
			return stream.Emit(h, alerts, r.Key, fmt.Sprintf("%d > %d", r.Value, limit))
		}
		return nil
	}, stream.EmitsTo(alerts), stream.Named("check"))
	d, topo := drive(t, b, streamtest.Partitions(2))
	if n := len(topology.Of(topo).Stages); n != 2 {
		t.Fatalf("%d stages, want 2 (set-limit, spend):\n%v", n, topo)
	}
	in := streamtest.NewInput(d, "spend", codec.String{}, codec.Int64Text{})
	in.Pipe("ann", 500)
	streamtest.NewInput(d, "set-limit", codec.String{}, codec.Int64Text{}).Pipe("ann", 100)
	in.Pipe("ann", 50)
	in.Pipe("ann", 500)
	wantKVs(t, strOut(d, "alerts"), "ann=500 > 100")
	if v, ok := streamtest.OpenGlobalTable(d, "limits", codec.String{}, codec.Int64Text{}).Get("ann"); !ok || v != 100 {
		t.Errorf("global table: ann = %d, %v", v, ok)
	}
}

// Orders keyed by order id are enriched with the country of the user who
// placed them, from a global table of users: no co-partitioning of orders
// and users is needed, and no repartition topic is created.
func ExampleGlobalJoin() {
	b := stream.NewBuilder()
	orders := stream.Source(b, "orders", codec.String{}, codec.String{}, stream.Named("orders"))         // order id -> user
	users := stream.SourceGlobalTable(b, "users", codec.String{}, codec.String{}, stream.Named("users")) // user -> country
	withCountry := stream.GlobalLeftJoin(orders, users,
		func(orderID, user string) string { return user },
		func(orderID, user, country string, ok bool) string {
			if !ok {
				return user + " from nowhere known"
			}
			return user + " from " + country
		}, stream.Named("with-country"))
	stream.To(withCountry, "orders-with-country", codec.String{}, codec.String{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	d := streamtest.New(exampleT{}, topo, streamtest.TopicPartitions("orders", 6), streamtest.TopicPartitions("users", 1))
	streamtest.NewInput(d, "users", codec.String{}, codec.String{}).Pipe("ann", "Germany")
	in := streamtest.NewInput(d, "orders", codec.String{}, codec.String{})
	in.Pipe("order-1", "ann")
	in.Pipe("order-2", "bob")
	for _, r := range streamtest.NewOutput(d, "orders-with-country", codec.String{}, codec.String{}).ReadAll() {
		fmt.Println(r.Key, "=", r.Value)
	}
	// Output:
	// order-1 = ann from Germany
	// order-2 = bob from nowhere known
}
