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

// changes renders a table's change stream as "key:old->new" with "-" for
// an absent value.
func changes[V any](rs []streamtest.Record[string, stream.Change[V]]) string {
	var parts []string
	for _, r := range rs {
		c := r.Value
		old, nw := "-", "-"
		if c.HasOld {
			old = fmt.Sprint(c.Old)
		}
		if c.HasNew {
			nw = fmt.Sprint(c.New)
		}
		parts = append(parts, r.Key+":"+old+"->"+nw)
	}
	return strings.Join(parts, " ")
}

func records[K, V any](rs []streamtest.Record[K, V]) string {
	var parts []string
	for _, r := range rs {
		if r.Tombstone {
			parts = append(parts, fmt.Sprintf("%v=<nil>", r.Key))
		} else {
			parts = append(parts, fmt.Sprintf("%v=%v", r.Key, r.Value))
		}
	}
	return strings.Join(parts, " ")
}

func TestSourceTable(t *testing.T) {
	b := stream.NewBuilder()
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	stream.TableTo(users, "users-copy", codec.String{}, codec.String{}, stream.Named("copy"))
	stream.To(users.ToStream(), "updates", codec.String{}, codec.String{})
	stream.To(users.Changes(), "changes", codec.String{}, codec.JSON[stream.Change[string]]{})
	d, topo := drive(t, b)
	if s := topology.Of(topo).Stages[0]; s.Name != "users" || len(s.Stores) != 1 || s.Stores[0].Name != "users" {
		t.Fatalf("stage %+v, want stage and store users", s)
	}
	in := strIn(d, "users")
	in.Pipe("ann", "de")
	in.Pipe("bob", "fr")
	in.Pipe("ann", "at")
	in.PipeTombstone("bob")
	in.PipeTombstone("nobody") // deleting a missing key changes nothing

	if got, want := records(strOut(d, "users-copy").ReadAll()), "ann=de bob=fr ann=at bob=<nil>"; got != want {
		t.Errorf("TableTo wrote %q, want %q", got, want)
	}
	wantKVs(t, strOut(d, "updates"), "ann=de bob=fr ann=at") // ToStream has no deletions
	ch := streamtest.NewOutput(d, "changes", codec.String{}, codec.JSON[stream.Change[string]]{})
	if got, want := changes(ch.ReadAll()), "ann:-->de bob:-->fr ann:de->at bob:fr->-"; got != want {
		t.Errorf("Changes %q, want %q", got, want)
	}
	st := streamtest.OpenStore(d, "users", codec.String{}, codec.String{})
	if v, ok := st.Get("ann"); !ok || v != "at" || st.Len() != 1 {
		t.Errorf("store: ann = %q, %v; %d entries; want only ann=at", v, ok, st.Len())
	}
}

func TestTableFilterAndMapValues(t *testing.T) {
	b := stream.NewBuilder()
	prices := stream.SourceTable(b, "prices", codec.String{}, codec.Int64Text{}, stream.Named("prices"))
	cheap := stream.TableFilter(prices, func(_ string, p int64) bool { return p < 10 }, stream.Named("cheap"))
	labels := stream.TableMapValues(cheap, func(k string, p int64) string { return fmt.Sprintf("%s@%d", k, p) })
	stream.TableTo(labels, "cheap-labels", codec.String{}, codec.String{})
	d, _ := drive(t, b)
	in := streamtest.NewInput(d, "prices", codec.String{}, codec.Int64Text{})
	in.Pipe("tea", 5)   // passes
	in.Pipe("gold", 99) // never passes: nothing flows
	in.Pipe("tea", 7)   // still passes
	in.Pipe("tea", 12)  // stops passing: a deletion
	in.Pipe("tea", 20)  // still out: nothing
	in.Pipe("gold", 3)  // starts passing
	in.PipeTombstone("gold")
	if got, want := records(strOut(d, "cheap-labels").ReadAll()), "tea=tea@5 tea=tea@7 tea=<nil> gold=gold@3 gold=<nil>"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestReduce(t *testing.T) {
	b := stream.NewBuilder()
	amounts := stream.Source(b, "amounts", codec.String{}, codec.Int64Text{}, stream.Named("read"))
	largest := stream.Reduce(stream.GroupByKey(amounts, codec.String{}, codec.Int64Text{}),
		func(agg, v int64) int64 { return max(agg, v) }, stream.Named("max"))
	stream.To(largest.ToStream(), "max", codec.String{}, codec.Int64Text{})
	d, topo := drive(t, b)
	if !strings.Contains(topo.String(), `Reduce "max" [store max]`) {
		t.Errorf("description:\n%v", topo)
	}
	in := streamtest.NewInput(d, "amounts", codec.String{}, codec.Int64Text{})
	for _, kv := range []struct {
		k string
		v int64
	}{{"a", 3}, {"b", 1}, {"a", 2}, {"a", 7}} {
		in.Pipe(kv.k, kv.v)
	}
	wantKVs(t, streamtest.NewOutput(d, "max", codec.String{}, codec.Int64Text{}), "a=3 b=1 a=3 a=7")
	// The store uses the Grouped's value codec.
	if v, _ := streamtest.OpenStore(d, "max", codec.String{}, codec.Int64Text{}).Get("a"); v != 7 {
		t.Errorf("store max[a] = %d, want 7", v)
	}
}

// usersByCountry counts users per country from a table of user -> country,
// and sums their ages per country with a reducer.
func usersByCountry(t *testing.T) (*streamtest.Driver, *stream.Topology) {
	b := stream.NewBuilder()
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	byCountry := stream.TableGroupBy(users, func(user, country string) (string, string) { return country, user },
		codec.String{}, codec.String{}, stream.Named("by-country"))
	counts := stream.TableCount(byCountry, stream.Named("per-country"))
	stream.TableTo(counts, "per-country", codec.String{}, codec.Int64Text{})
	names := stream.TableAggregate(byCountry, func() string { return "" },
		func(_, user, agg string) string { return agg + "+" + user },
		func(_, user, agg string) string { return strings.Replace(agg, "+"+user, "", 1) },
		codec.String{}, stream.Named("names"))
	stream.TableTo(names, "names", codec.String{}, codec.String{})
	return drive(t, b, streamtest.Partitions(2), streamtest.ApplicationID("app"))
}

func TestTableGroupByAggregateWithSubtractor(t *testing.T) {
	d, topo := usersByCountry(t)
	if got := stageNames(topo); len(got) != 2 || got[1] != "by-country" {
		t.Fatalf("stages %v", got)
	}
	in := strIn(d, "users")
	in.Pipe("ann", "de")
	in.Pipe("bob", "de")
	in.Pipe("cid", "fr")
	in.Pipe("ann", "fr") // ann moves: de loses her, fr gains her
	in.Pipe("bob", "de") // same group: one record with old and new
	in.PipeTombstone("cid")

	counts := streamtest.ReadTable(streamtest.NewOutput(d, "per-country", codec.String{}, codec.Int64Text{}), nil)
	if counts["de"] != 1 || counts["fr"] != 1 {
		t.Errorf("counts %v, want de=1 fr=1", counts)
	}
	out := streamtest.NewOutput(d, "per-country", codec.String{}, codec.Int64Text{})
	if got, want := records(out.ReadAll()), "de=1 de=2 fr=1 de=1 fr=2 de=1 fr=1"; got != want {
		t.Errorf("count updates %q, want %q", got, want)
	}
	names := streamtest.ReadTable(strOut(d, "names"), nil)
	if names["de"] != "+bob" || names["fr"] != "+ann" {
		t.Errorf("names %v, want de=+bob fr=+ann", names)
	}

	// The repartition topic carries change envelopes: one record per
	// group touched.
	rep := streamtest.NewOutput(d, "app-by-country-repartition", codec.String{}, stream.ChangeCodec[string](codec.String{}))
	if got, want := changes(rep.ReadAll()), "de:-->ann de:-->bob fr:-->cid de:ann->- fr:-->ann de:bob->bob fr:cid->-"; got != want {
		t.Errorf("repartition topic %q, want %q", got, want)
	}
}

func TestTableReduce(t *testing.T) {
	b := stream.NewBuilder()
	balances := stream.SourceTable(b, "balances", codec.String{}, codec.Int64Text{}, stream.Named("balances"))
	byBank := stream.TableGroupBy(balances, func(acct string, v int64) (string, int64) { return acct[:1], v },
		codec.String{}, codec.Int64Text{}, stream.Named("by-bank"))
	total := stream.TableReduce(byBank, func(a, v int64) int64 { return a + v }, func(a, v int64) int64 { return a - v },
		stream.Named("total"))
	stream.TableTo(total, "totals", codec.String{}, codec.Int64Text{})
	d, _ := drive(t, b)
	in := streamtest.NewInput(d, "balances", codec.String{}, codec.Int64Text{})
	in.Pipe("a1", 10)
	in.Pipe("a2", 5)
	in.Pipe("a1", 3)
	in.PipeTombstone("a2")
	out := streamtest.NewOutput(d, "totals", codec.String{}, codec.Int64Text{})
	if got, want := records(out.ReadAll()), "a=10 a=15 a=8 a=3"; got != want {
		t.Fatalf("totals %q, want %q", got, want)
	}
}

func TestChangeCodec(t *testing.T) {
	cc := stream.ChangeCodec[string](codec.String{})
	for _, c := range []stream.Change[string]{
		{Old: "a", HasOld: true},
		{New: "b", HasNew: true},
		{Old: "", New: "", HasOld: true, HasNew: true},
		{Old: "old", New: "new", HasOld: true, HasNew: true},
	} {
		b, err := cc.Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cc.Decode(b)
		if err != nil || got != c {
			t.Errorf("round trip of %+v: %+v, %v", c, got, err)
		}
	}
	if _, err := cc.Encode(stream.Change[string]{}); err == nil {
		t.Error("encoding an empty change succeeded")
	}
	// Pinned encoding: version 1, both flags, uvarint length of old.
	if b, _ := cc.Encode(stream.Change[string]{Old: "ab", New: "c", HasOld: true, HasNew: true}); string(b) != "\x13\x02abc" {
		t.Errorf("encoding %q, want %q", b, "\x13\x02abc")
	}
	for _, bad := range []string{"", "\x23x", "\x10", "\x17x", "\x11\x05ab", "\x11\x01ab"} {
		if _, err := cc.Decode([]byte(bad)); !errors.Is(err, codec.ErrDecode) {
			t.Errorf("Decode(%q) = %v, want an error matching codec.ErrDecode", bad, err)
		}
	}
}
