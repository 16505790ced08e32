package stream

import (
	"github.com/sluicehq/sluice/codec"
)

// Grouped is a stream whose records are partitioned by key, ready to be
// aggregated (Count, Aggregate, Reduce). It is the result of GroupBy or
// GroupByKey and carries the codecs they were given.
type Grouped[K, V any] struct {
	s  *streamNode[K, V]
	kc codec.Codec[K]
	vc codec.Codec[V]
}

// GroupBy re-keys every record with fn and groups the records by the new key.
//
// Records with the same new key must meet in one task, so GroupBy writes the
// re-keyed records (key encoded with kc, value with vc) to a repartition
// topic and reads them back: the topology splits there into two stages. The
// repartition topic is internal (created and owned by the application) and
// named "<app>-<name>-repartition", with name from Named or generated; the
// stage that reads it is named <name>. Partitions sets its partition count.
//
// A record whose new key encodes to no bytes (a null key, see ErrNullKey)
// has no group: it is not written, and the record fails with a
// *NullKeyError for the stage's error policy. (Kafka's producers would
// spread keyless records over the partitions, splitting one group across
// tasks.)
func GroupBy[K, V, K2 any](s Stream[K, V], fn func(K, V) K2, kc codec.Codec[K2], vc codec.Codec[V], opts ...TopicOption) Grouped[K2, V] {
	cfg := configure(opts)
	n := s.child("GroupBy", cfg)
	if n == nil {
		return Grouped[K2, V]{}
	}
	checkFunc(n, "key function", fn == nil)
	out := repartition(s, n, cfg, fn, kc, vc, true)
	return Grouped[K2, V]{s: out, kc: kc, vc: vc}
}

// GroupByKey groups the records by their key.
//
// Like GroupBy it writes the records to a repartition topic (named
// "<app>-<name>-repartition") and reads them back in a new stage, but only
// when the key may have changed since the record was read from a topic (a
// Map, FlatMap, SelectKey or ProcessTo lies between the Source and
// GroupByKey), or when Partitions is given. A stream that still carries its
// topic's keys is already partitioned by them, so it is grouped in place, as
// Kafka Streams does; the name then goes unused. This relies on the input
// topic being partitioned by its key bytes, as Kafka's default partitioner
// does. A record with a null key (see ErrNullKey) fails with a
// *NullKeyError, at the repartition or at the aggregation.
func GroupByKey[K, V any](s Stream[K, V], kc codec.Codec[K], vc codec.Codec[V], opts ...TopicOption) Grouped[K, V] {
	if s.s == nil {
		return Grouped[K, V]{}
	}
	cfg := configure(opts)
	if s.s.rekeyed == nil && !cfg.partSet {
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
	out := repartition(s, n, cfg, func(k K, _ V) K { return k }, kc, vc, true)
	return Grouped[K, V]{s: out, kc: kc, vc: vc}
}

// Repartition writes every record to a repartition topic, partitioned by the
// hash of its key encoded with kc (values encoded with vc), and reads them
// back in a new stage, named after the operator: "<app>-<name>-repartition".
// Use it to make a re-keyed stream co-partitioned with a table before a
// Join, to spread a stage over more partitions (Partitions), or to cut a
// long stage in two. The returned stream is partitioned by its key.
//
// A key that encodes to no bytes (nil or empty) is written as an empty
// key, never as Kafka's null key, so the runtime partitions it by hashing
// its (zero) bytes like any other key, and all such records land in one
// partition, the one the test driver puts them in (streamtest.Partition).
// A null key would be spread over the partitions by the producer.
func Repartition[K, V any](s Stream[K, V], kc codec.Codec[K], vc codec.Codec[V], opts ...TopicOption) Stream[K, V] {
	cfg := configure(opts)
	n := s.child("Repartition", cfg)
	if n == nil {
		return Stream[K, V]{}
	}
	return Stream[K, V]{repartition(s, n, cfg, func(k K, _ V) K { return k }, kc, vc, false)}
}

// repartition compiles the writing side of a repartition (operator n, in s's
// stage) and creates its reading side, which starts a new stage. A key that
// encodes to no bytes fails its record with a *NullKeyError when group is
// set (it has no group) and is written as an empty, non-nil key otherwise:
// the runtime's producer hashes an empty key like any other (murmur2 of no
// bytes) but spreads a nil one over the partitions.
func repartition[K, V, K2 any](s Stream[K, V], n *node, cfg opConfig, fn func(K, V) K2, kc codec.Codec[K2], vc codec.Codec[V], group bool) *streamNode[K2, V] {
	r, t := repartitionTopic(n, cfg)
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)
	out := &streamNode[K2, V]{n: r, keyCodec: kc}
	r.entry = sourceEntry(r, out, kc, vc, nil)

	if fn != nil && kc != nil && vc != nil {
		label, target := n.label(), "topic "+quote(t.name)
		ke, ve := newEncoder(kc), newEncoder(vc)
		s.attach(func(h *Handle, k K, v V) error {
			kb, err := ke.encode(h, fn(k, v))
			if err != nil {
				return h.codecError("encode", "key", target, label, err)
			}
			if len(kb) == 0 {
				if group {
					return h.nullKeyError(label)
				}
				kb = []byte{}
			}
			vb, err := ve.encode(h, v)
			if err != nil {
				return h.codecError("encode", "value", target, label, err)
			}
			return h.emit(h.prog.topic(t), kb, vb)
		})
	}
	return out
}

// repartitionTopic gives operator n its repartition topic and creates the
// reading side: a source of a new stage, carrying n's name. The caller sets
// the reader's entry.
func repartitionTopic(n *node, cfg opConfig) (reader *node, t *topicRef) {
	b := n.b
	t = &topicRef{name: n.name + "-repartition", internal: true, generated: n.generated}
	if cfg.partSet {
		if cfg.partitions < 1 {
			b.fail(ErrInvalidArgument, "%s: Partitions(%d): a topic needs at least 1 partition", n.label(), cfg.partitions)
		} else {
			t.partitions = cfg.partitions
		}
	}
	n.out = append(n.out, t)
	n.details = "-> " + t.String()
	reader = &node{b: b, id: len(b.nodes), op: "Repartition", name: n.name, generated: n.generated,
		in: t, derived: true, writer: n, details: "<- " + t.String()}
	b.nodes = append(b.nodes, reader)
	return reader, t
}

// Count counts the records per key. The counts live in a state store named
// after the operator (see Named), as 8-byte big-endian numbers (codec.Int64),
// with a changelog topic "<app>-<name>-changelog". Every record emits the
// key's new count downstream. A record with a null key (see ErrNullKey)
// fails with a *NullKeyError; this holds for every aggregation.
func Count[K, V any](g Grouped[K, V], opts ...Option) Table[K, int64] {
	return aggregate(Stream[K, V]{g.s}, g.kc, "Count", codec.Int64{}, true, opts, nil,
		func(_ K, _ V, n int64, _ bool) (int64, bool) { return n + 1, true })
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
	check := func(n *node) {
		checkFunc(n, "init function", init == nil)
		checkFunc(n, "add function", add == nil)
	}
	var step func(K, V, A, bool) (A, bool)
	if init != nil && add != nil {
		step = func(k K, v V, a A, had bool) (A, bool) {
			if !had {
				a = init()
			}
			return add(k, v, a), true
		}
	}
	return aggregate(Stream[K, V]{g.s}, g.kc, "Aggregate", ac, true, opts, check, step)
}

// Reduce combines the records of every key into one value of their own
// type: the first record of a key is its value, each later one replaces it
// by fn(previous, value). The values live in a state store named after the
// operator, encoded with the Grouped's value codec, with a changelog topic
// "<app>-<name>-changelog". Every record emits the key's new value
// downstream.
//
// The previous value passed to fn was decoded for this call alone: fn may
// modify it and return it.
func Reduce[K, V any](g Grouped[K, V], fn func(agg, v V) V, opts ...Option) Table[K, V] {
	var step func(K, V, V, bool) (V, bool)
	if fn != nil {
		step = func(_ K, v V, a V, had bool) (V, bool) {
			if !had {
				return v, true
			}
			return fn(a, v), true
		}
	}
	// A nil value codec was reported by GroupBy (GroupByKey).
	return aggregate(Stream[K, V]{g.s}, g.kc, "Reduce", g.vc, false, opts,
		func(n *node) { checkFunc(n, "reduce function", fn == nil) }, step)
}

// aggregate adds an operator that keeps, per key, a value of type A in a
// store named after it and updates it for every record of s with step(key,
// record, the key's value, whether it had one). A step that returns false
// leaves the key as it was and emits nothing. Every update is forwarded as a
// Change. check reports nil functions; a nil step or codec compiles nothing
// (Build fails). checkAC says whether a nil ac is reported here.
func aggregate[K, X, A any](s Stream[K, X], kc codec.Codec[K], op string, ac codec.Codec[A], checkAC bool, opts []Option,
	check func(n *node), step func(k K, x X, a A, had bool) (A, bool)) Table[K, A] {
	n := s.child(op, configure(opts))
	if n == nil {
		return Table[K, A]{}
	}
	b := n.b
	if check != nil {
		check(n)
	}
	if checkAC {
		checkCodec(n, "aggregate codec", ac == nil)
	}
	st := &storeDecl{b: b, name: n.name, generated: n.generated, by: n.label()}
	b.stores = append(b.stores, st)
	b.useStore(n, st)
	n.details = "[store " + n.name + "]"
	out := &tableNode[K, A]{n: n, kc: kc, stores: []*storeDecl{st}}
	if step == nil || ac == nil || kc == nil { // kc: GroupBy reported it
		return Table[K, A]{out}
	}
	out.get = storeGetter(n, st, kc, ac)

	ad := newDecoder(ac)
	fresh := freshEncoding(kc) && freshEncoding(ac)
	label, target := n.label(), "store "+quote(st.name)
	s.attach(func(h *Handle, k K, x X) error {
		store, err := h.taskStore(st)
		if err != nil {
			return err
		}
		kb, err := kc.Encode(k)
		if err != nil {
			return h.codecError("encode", "key", target, label, err)
		}
		if len(kb) == 0 {
			return h.nullKeyError(label)
		}
		old, had, err := store.Get(kb)
		if err != nil {
			return err
		}
		var a, prev A
		if had {
			if a, err = ad.decode(old); err != nil {
				return h.codecError("decode", "value", target, label, err)
			}
			if out.sendOld {
				// A second copy: step may modify a in place.
				if prev, err = ad.decode(old); err != nil {
					return h.codecError("decode", "value", target, label, err)
				}
			}
		}
		a, changed := step(k, x, a, had)
		if !changed {
			return nil
		}
		ab, err := ac.Encode(a)
		if err != nil {
			return h.codecError("encode", "value", target, label, err)
		}
		if err := putEncoded(store, kb, ab, fresh); err != nil {
			return err
		}
		return out.forward(h, k, Change[A]{Old: prev, New: a, HasOld: had, HasNew: true})
	})
	return Table[K, A]{out}
}
