package stream

import (
	"github.com/sluicehq/sluice/codec"
)

// Grouped is a stream whose records are partitioned by key, ready to be
// aggregated (Count, Aggregate). It is the result of GroupBy or GroupByKey
// and carries the codecs they were given.
type Grouped[K, V any] struct {
	s  *streamNode[K, V]
	kc codec.Codec[K]
	vc codec.Codec[V]
}

// Table is a changelog stream of the latest value per key, kept in a state
// store: the result of Count and Aggregate. Every update is forwarded at once
// (there is no caching that would coalesce updates).
type Table[K, V any] struct {
	s *streamNode[K, V]
}

// ToStream returns the stream of the table's updates: one record per update,
// with the key and the new value.
func (t Table[K, V]) ToStream() Stream[K, V] { return Stream[K, V]{t.s} }

// GroupBy re-keys every record with fn and groups the records by the new key.
//
// Records with the same new key must meet in one task, so GroupBy writes the
// re-keyed records (key encoded with kc, value with vc) to a repartition
// topic and reads them back: the topology splits there into two stages. The
// repartition topic is internal (created and owned by the application) and
// named "<app>-<name>-repartition", with name from Named or generated; the
// stage that reads it is named <name>.
func GroupBy[K, V, K2 any](s Stream[K, V], fn func(K, V) K2, kc codec.Codec[K2], vc codec.Codec[V], opts ...Option) Grouped[K2, V] {
	n := s.child("GroupBy", configure(opts))
	if n == nil {
		return Grouped[K2, V]{}
	}
	checkFunc(n, "key function", fn == nil)
	return repartition(s, n, fn, kc, vc)
}

// GroupByKey groups the records by their key.
//
// Like GroupBy it writes the records to a repartition topic (named
// "<app>-<name>-repartition") and reads them back in a new stage, but only
// when the key may have changed since the record was read from a topic (a
// Map, FlatMap or ProcessTo lies between the Source and GroupByKey). A stream
// that still carries its topic's keys is already partitioned by them, so it
// is grouped in place, as Kafka Streams does; the name then goes unused. This
// relies on the input topic being partitioned by its key bytes, as Kafka's
// default partitioner does.
func GroupByKey[K, V any](s Stream[K, V], kc codec.Codec[K], vc codec.Codec[V], opts ...Option) Grouped[K, V] {
	if s.s == nil {
		return Grouped[K, V]{}
	}
	cfg := configure(opts)
	if !s.s.keyChanged {
		b := s.s.n.b
		label := "GroupByKey after " + s.s.n.label()
		if cfg.named {
			b.checkName(label, "the name given with Named", cfg.name)
		}
		if kc == nil {
			b.fail(ErrNilCodec, "%s: key codec is nil; pass one, e.g. codec.String{}", label)
		}
		if vc == nil {
			b.fail(ErrNilCodec, "%s: value codec is nil; pass one, e.g. codec.String{}", label)
		}
		return Grouped[K, V]{s: s.s, kc: kc, vc: vc}
	}
	n := s.child("GroupByKey", cfg)
	return repartition(s, n, func(k K, _ V) K { return k }, kc, vc)
}

// repartition compiles the writing side of a repartition (operator n, in s's
// stage) and creates its reading side, which starts a new stage.
func repartition[K, V, K2 any](s Stream[K, V], n *node, fn func(K, V) K2, kc codec.Codec[K2], vc codec.Codec[V]) Grouped[K2, V] {
	b := n.b
	t := &topicRef{name: n.name + "-repartition", internal: true, generated: n.generated}
	n.out = append(n.out, t)
	n.details = "-> " + t.String()
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)

	// The reading side: a source of the new stage, carrying n's name.
	r := &node{b: b, id: len(b.nodes), op: "Repartition", name: n.name, generated: n.generated,
		in: t, derived: true, writer: n, details: "<- " + t.String()}
	b.nodes = append(b.nodes, r)
	out := &streamNode[K2, V]{n: r}
	r.entry = sourceEntry(r, out, kc, vc)

	if fn != nil && kc != nil && vc != nil {
		label, target, id := n.label(), "topic "+quote(t.name), n.id
		s.attach(func(h *Handle, k K, v V) error {
			kb, err := kc.Encode(fn(k, v))
			if err != nil {
				return h.codecError("encode", "key", target, label, err)
			}
			vb, err := vc.Encode(v)
			if err != nil {
				return h.codecError("encode", "value", target, label, err)
			}
			return h.emit(h.prog.internal[id], kb, vb)
		})
	}
	return Grouped[K2, V]{s: out, kc: kc, vc: vc}
}

// Count counts the records per key. The counts live in a state store named
// after the operator (see Named), as 8-byte big-endian numbers (codec.Int64),
// with a changelog topic "<app>-<name>-changelog". Every record emits the
// key's new count downstream.
func Count[K, V any](g Grouped[K, V], opts ...Option) Table[K, int64] {
	return aggregate(g, "Count", func() int64 { return 0 },
		func(_ K, _ V, n int64) int64 { return n + 1 }, codec.Int64{}, opts)
}

// Aggregate folds the records of every key into a value of type A: the first
// record of a key starts from init(), each record replaces the key's value by
// add(key, value, previous). The values live in a state store named after the
// operator (see Named), encoded with ac, with a changelog topic
// "<app>-<name>-changelog". Every record emits the key's new value
// downstream.
//
// The previous value passed to add was decoded for this call alone: add may
// modify it and return it.
func Aggregate[K, V, A any](g Grouped[K, V], init func() A, add func(K, V, A) A, ac codec.Codec[A], opts ...Option) Table[K, A] {
	return aggregate(g, "Aggregate", init, add, ac, opts)
}

func aggregate[K, V, A any](g Grouped[K, V], op string, init func() A, add func(K, V, A) A, ac codec.Codec[A], opts []Option) Table[K, A] {
	s := Stream[K, V]{g.s}
	n := s.child(op, configure(opts))
	if n == nil {
		return Table[K, A]{}
	}
	b := n.b
	checkFunc(n, "init function", init == nil)
	checkFunc(n, "add function", add == nil)
	checkCodec(n, "aggregate codec", ac == nil)
	st := &storeDecl{b: b, name: n.name, generated: n.generated, by: n.label(), users: []*node{n}}
	b.stores = append(b.stores, st)
	n.stores = append(n.stores, st)
	n.details = "[store " + n.name + "]"
	out := &streamNode[K, A]{n: n}
	if init == nil || add == nil || ac == nil || g.kc == nil { // g.kc: GroupBy reported it
		return Table[K, A]{out}
	}

	kc, ad := g.kc, newDecoder(ac)
	label, target := n.label(), "store "+quote(st.name)
	s.attach(func(h *Handle, k K, v V) error {
		store, err := h.taskStore(st)
		if err != nil {
			return err
		}
		kb, err := kc.Encode(k)
		if err != nil {
			return h.codecError("encode", "key", target, label, err)
		}
		old, ok, err := store.Get(kb)
		if err != nil {
			return err
		}
		var a A
		if ok {
			if a, err = ad.decode(old); err != nil {
				return h.codecError("decode", "value", target, label, err)
			}
		} else {
			a = init()
		}
		a = add(k, v, a)
		ab, err := ac.Encode(a)
		if err != nil {
			return h.codecError("encode", "value", target, label, err)
		}
		if err := store.Put(kb, ab); err != nil {
			return err
		}
		return out.forward(h, k, a)
	})
	return Table[K, A]{out}
}
