package streamtest_test

import (
	"errors"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// wantNullKey fails the test unless err is a record's *NullKeyError (or
// another error matching stream.ErrNullKey when op is "").
func wantNullKey(t *testing.T, err error, op string) {
	t.Helper()
	var ne *stream.NullKeyError
	switch {
	case !errors.Is(err, stream.ErrNullKey):
		t.Errorf("error %v, want one matching stream.ErrNullKey", err)
	case op != "" && (!errors.As(err, &ne) || ne.Operator != op):
		t.Errorf("error %v, want a *NullKeyError of %s", err, op)
	}
}

// A group key that encodes to no bytes has no group: GroupBy writes nothing
// to the repartition topic and fails the record, in the driver as in the
// runtime (whose producer would spread a keyless record over the
// partitions, splitting the group across tasks).
func TestGroupByNullKey(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	g := stream.GroupBy(s, func(_, v string) string { return v }, codec.String{}, codec.String{}, stream.Named("by-value"))
	stream.Count(g, stream.Named("counts"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(4))
	in := streamtest.NewInput(d, "in", codec.String{}, codec.String{})
	wantNullKey(t, in.Send(streamtest.Record[string, string]{Key: "k", Value: ""}), `GroupBy "by-value"`)
	in.Pipe("k", "x")
	if msgs := d.Messages("streamtest-by-value-repartition"); len(msgs) != 1 || string(msgs[0].Key) != "x" {
		t.Errorf("repartition topic holds %d records (%v), want only x's", len(msgs), msgs)
	}
	if n := streamtest.OpenStore(d, "counts", codec.String{}, codec.Int64{}).Len(); n != 1 {
		t.Errorf("%d groups counted, want 1", n)
	}
}

// GroupByKey of a stream re-keyed to a null key fails the record at the
// repartition; in place (no repartition) at the aggregation.
func TestGroupByKeyNullKey(t *testing.T) {
	for _, rekey := range []bool{false, true} {
		b := stream.NewBuilder()
		s := stream.Source(b, "in", codec.Bytes{}, codec.String{}, stream.Named("in"))
		op := `Count "counts"`
		if rekey {
			s = stream.SelectKey(s, func(_ []byte, v string) []byte { return []byte(v) })
			op = `GroupByKey "by-value"`
		}
		stream.Count(stream.GroupByKey(s, codec.Bytes{}, codec.String{}, stream.Named("by-value")), stream.Named("counts"))
		topo, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		d := streamtest.New(t, topo, streamtest.Partitions(2))
		for _, k := range [][]byte{nil, {}} {
			wantNullKey(t, d.PipeMessage("in", streamtest.Message{Key: k, Value: []byte("")}), op)
		}
		if msgs := d.Messages("streamtest-by-value-repartition"); len(msgs) != 0 {
			t.Errorf("repartition topic holds %v", msgs)
		}
		if n := streamtest.OpenStore(d, "counts", codec.Bytes{}, codec.Int64{}).Len(); n != 0 {
			t.Errorf("counts holds %d keys", n)
		}
	}
}

// A table change whose new group is null fails with its upstream effects:
// the table keeps its row, the groups stay consistent with it. An old value
// whose group is null (the function changed) is in no group: nothing is
// subtracted, and the row can still change.
func TestTableGroupByNullKey(t *testing.T) {
	b := stream.NewBuilder()
	users := stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	dropped := "" // a country the grouping function maps to the null group
	byCountry := stream.TableGroupBy(users, func(u, c string) (string, string) {
		if c == dropped {
			return "", u
		}
		return c, u
	}, codec.String{}, codec.String{}, stream.Named("by-country"))
	stream.TableCount(byCountry, stream.Named("per-country"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(2))
	users2 := streamtest.NewInput(d, "users", codec.String{}, codec.String{})
	users2.Pipe("ann", "de")
	wantNullKey(t, users2.Send(streamtest.Record[string, string]{Key: "ann", Value: ""}), `TableGroupBy "by-country"`)
	wantNullKey(t, users2.Send(streamtest.Record[string, string]{Key: "bob", Value: ""}), `TableGroupBy "by-country"`)
	if v, _ := streamtest.OpenStore(d, "users", codec.String{}, codec.String{}).Get("ann"); v != "de" {
		t.Errorf("ann's row is %q, want de (the failed change discarded)", v)
	}
	counts := streamtest.OpenStore(d, "per-country", codec.String{}, codec.Int64{})
	if n, _ := counts.Get("de"); n != 1 || counts.Len() != 1 {
		t.Errorf("per-country %v, want de:1", counts.All())
	}
	dropped = "de" // as if the function had been changed
	users2.Pipe("ann", "fr")
	if n, _ := counts.Get("fr"); n != 1 {
		t.Errorf("per-country %v, want fr:1 after ann moved from a null group", counts.All())
	}
	for _, m := range d.Messages("streamtest-by-country-repartition") {
		if len(m.Key) == 0 {
			t.Errorf("repartition record with a null key: %+v", m)
		}
	}
}

// Repartition (no grouping) writes a key that encodes to no bytes as an
// empty key, which the runtime's producer hashes like any other key (a nil
// key it would spread), so the driver and the runtime agree on its
// partition.
func TestRepartitionNullKeyHashed(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	re := stream.Repartition(stream.SelectKey(s, func(_, v string) []byte { return nil }),
		codec.Bytes{}, codec.String{}, stream.Named("re"), stream.Partitions(5))
	stream.To(re, "out", codec.Bytes{}, codec.String{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(2))
	in := streamtest.NewInput(d, "in", codec.String{}, codec.String{})
	in.Pipe("a", "1")
	in.Pipe("b", "2")
	msgs := d.Messages("streamtest-re-repartition")
	if len(msgs) != 2 {
		t.Fatalf("%d repartitioned records, want 2", len(msgs))
	}
	want := streamtest.Partition([]byte{}, 5)
	for _, m := range msgs {
		if m.Key == nil || len(m.Key) != 0 || m.Partition != want {
			t.Errorf("repartitioned record key %#v in partition %d, want an empty, non-nil key in partition %d", m.Key, m.Partition, want)
		}
	}
	if len(d.Messages("out")) != 2 {
		t.Errorf("output: %v", d.Messages("out"))
	}
}

// A SourceTable record with a null or empty key, and a store Put or
// Delete with a key of no bytes in a Process, fail their record alone.
func TestSourceTableAndPutNullKey(t *testing.T) {
	b := stream.NewBuilder()
	stream.SourceTable(b, "users", codec.String{}, codec.String{}, stream.Named("users"))
	s := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	st := stream.DeclareStore(b, "latest", codec.String{}, codec.String{})
	stream.Process(s, func(h *stream.Handle, r stream.Record[string, string]) error {
		if r.Value == "delete" {
			return stream.Delete(h, st, r.Key)
		}
		_ = stream.Put(h, st, r.Key, r.Value) // the record fails even if the error is ignored
		return nil
	}, stream.Named("put"), stream.Uses(st))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo)
	for _, k := range [][]byte{nil, {}} {
		wantNullKey(t, d.PipeMessage("users", streamtest.Message{Key: k, Value: []byte("de")}), `SourceTable "users"`)
		wantNullKey(t, d.PipeMessage("in", streamtest.Message{Key: k, Value: []byte("v")}), "")
		wantNullKey(t, d.PipeMessage("in", streamtest.Message{Key: k, Value: []byte("delete")}), "")
	}
	if n := streamtest.OpenStore(d, "users", codec.String{}, codec.String{}).Len(); n != 0 {
		t.Errorf("users holds %d rows", n)
	}
	if n := streamtest.OpenStore(d, "latest", codec.String{}, codec.String{}).Len(); n != 0 {
		t.Errorf("latest holds %d keys", n)
	}
}

// Emit to a Loop writes a key of no bytes as an empty key too, so the loop
// record lands in the partition the runtime's producer hashes it to.
func TestLoopEmitNullKeyHashed(t *testing.T) {
	b := stream.NewBuilder()
	in := stream.Source(b, "in", codec.Bytes{}, codec.String{}, stream.Named("in"))
	loop := stream.DeclareLoop(b, codec.Bytes{}, codec.String{}, stream.Named("again"))
	all := stream.Merge([]stream.Stream[[]byte, string]{in, loop.Stream()}, stream.Named("merge"))
	stream.Process(all, func(h *stream.Handle, r stream.Record[[]byte, string]) error {
		if r.Value == "once" {
			return stream.Emit(h, loop.Output(), nil, "looped")
		}
		return nil
	}, stream.Named("loop"), stream.EmitsTo(loop.Output()))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(2))
	if err := d.PipeMessage("in", streamtest.Message{Key: []byte("k"), Value: []byte("once")}); err != nil {
		t.Fatal(err)
	}
	msgs := d.Messages("streamtest-again-loop")
	want := streamtest.Partition([]byte{}, 2)
	if len(msgs) != 1 || msgs[0].Key == nil || msgs[0].Partition != want {
		t.Errorf("loop holds %+v, want one record with an empty, non-nil key in partition %d", msgs, want)
	}
}

// TestLoopToNullKeyHashed: LoopTo writes a key of no bytes as an empty key,
// hashed like any other, as Emit to a loop does (a nil key would be spread
// over the loop's partitions by the runtime's producer).
func TestLoopToNullKeyHashed(t *testing.T) {
	b := stream.NewBuilder()
	in := stream.Source(b, "in", codec.Bytes{}, codec.String{}, stream.Named("in"))
	loop := stream.DeclareLoop(b, codec.Bytes{}, codec.String{}, stream.Named("again"))
	all := stream.Merge([]stream.Stream[[]byte, string]{in, loop.Stream()}, stream.Named("merge"))
	back := stream.Map(stream.Filter(all, func(_ []byte, v string) bool { return v == "once" }),
		func(_ []byte, v string) ([]byte, string) { return nil, "looped" }, stream.Named("nil-key"))
	stream.LoopTo(back, loop, stream.Named("back"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(2))
	if err := d.PipeMessage("in", streamtest.Message{Key: []byte("k"), Value: []byte("once")}); err != nil {
		t.Fatal(err)
	}
	msgs := d.Messages("streamtest-again-loop")
	want := streamtest.Partition([]byte{}, 2)
	if len(msgs) != 1 || msgs[0].Key == nil || msgs[0].Partition != want {
		t.Errorf("loop holds %+v, want one record with an empty, non-nil key in partition %d", msgs, want)
	}
}
