package stream

import (
	"fmt"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
)

// ErrNullKey is matched (errors.Is) by the error of a record whose key is
// null where a key is required: a SourceTable record, a record reaching an
// aggregation (Count, Aggregate, Reduce and the table aggregations), a
// record GroupBy, GroupByKey or TableGroupBy would group under a null key,
// and a store Put or Delete (from a Process function) with a null key.
// Such a record is handed to the runtime's error policy, alone: with
// processor.Skip it is counted as skipped and logged, with
// processor.DeadLetter it goes to the dead-letter topic, and with
// processor.Fail it stops the stage naming the record. (Kafka Streams drops
// and counts these records.) Without this check the store write would reach
// the store's changelog, a compacted topic, as a record without a key, which
// the broker rejects with INVALID_RECORD, failing the whole transaction, and
// again after every restart.
//
// A key is null when it is, or encodes to, zero bytes: Kafka's null key and
// an empty key alike, since codecs do not keep the difference
// (codec.Bytes decodes both to nil, codec.String encodes "" to no bytes).
// To use "" as a key, encode it with a codec that gives it a byte.
//
// The concrete error of a DSL operator is a *NullKeyError; a Put or Delete
// returns an error wrapping ErrNullKey that names the store.
var ErrNullKey = exec.ErrNullKey

// NullKeyError reports a record with a null key (see ErrNullKey) at an
// operator that needs a key. It matches ErrNullKey.
type NullKeyError struct {
	// Operator is the operator, e.g. `SourceTable "users"`.
	Operator string
	// Topic, Partition and Offset identify the input record being
	// processed (Offset -1 in a timer).
	Topic     string
	Partition int32
	Offset    int64
}

func (e *NullKeyError) Error() string {
	return fmt.Sprintf("stream: null key in %s (record %s/%d@%d): a key of no bytes cannot key a table, an aggregation or a group, whose changelog and repartition topics need keys",
		e.Operator, e.Topic, e.Partition, e.Offset)
}

// Is reports whether target is ErrNullKey.
func (e *NullKeyError) Is(target error) bool { return target == ErrNullKey }

// nullKeyError returns the *NullKeyError of the current record at operator.
func (h *Handle) nullKeyError(operator string) error {
	return &NullKeyError{Operator: operator, Topic: h.rec.Topic, Partition: h.rec.Partition, Offset: h.rec.Offset}
}

// Table is a changing map from keys to values: the latest value per key. It
// is the result of SourceTable (a compacted topic read as a table), of the
// aggregations (Count, Aggregate, Reduce and their table forms), and of the
// table operators (TableFilter, TableMapValues, TableJoin, TableLeftJoin).
//
// A table is a stream of changes: every update of a key, or its deletion,
// flows downstream as a Change carrying the old and the new value, and
// operators downstream (ToStream, Changes, TableTo, the table operators) see
// each. There is no caching that would coalesce updates.
//
// Tables made by SourceTable and the aggregations are materialized: they keep
// their values in a state store named after the operator, with a changelog
// topic. TableFilter, TableMapValues and the table joins are not: looking a
// key up in them (a Join does) looks it up in the stores they derive from and
// applies their functions again, so those functions must be deterministic.
// Materialize one by aggregating it, or by writing it to a topic with
// TableTo and reading it back with SourceTable.
//
// Like Stream, the zero Table belongs to no Builder; only use tables
// returned by this package.
type Table[K, V any] struct {
	t *tableNode[K, V]
}

// Change is one update of a table row: its value before (Old, if HasOld) and
// after (New, if HasNew). A row that did not exist before has HasOld false;
// a deletion has HasNew false.
type Change[V any] struct {
	Old, New       V
	HasOld, HasNew bool
}

// tableNode is the typed side of an operator that outputs a table.
type tableNode[K, V any] struct {
	n    *node
	down []func(h *Handle, k K, c Change[V]) error
	// kc is the codec whose encoding of the key partitions the table (and
	// keys its root store): a SourceTable's key codec, an aggregation's
	// grouping key codec.
	kc codec.Codec[K]
	// stores are the stores a lookup in the table reads; an operator that
	// looks keys up (a join) must run in their stage.
	stores []*storeDecl
	// get returns the table's current value of k, as the open transaction
	// sees it. nil when a mistake was recorded (Build fails).
	get func(h *Handle, k K) (V, bool, error)
	// sendOld is set when an operator downstream needs Change.Old. Without
	// it Old may be the zero value, though HasOld is always accurate.
	sendOld bool
	// needOld asks the tables this one derives from for old values; nil
	// for materialized tables, which have them at hand.
	needOld func()
	// window is the window definition of a windowed aggregation's table
	// (keys are Windowed), kept by the views that keep keys; nil for other
	// tables.
	window *windowSpec
}

// requireOld makes t send old values (see sendOld).
func (t *tableNode[K, V]) requireOld() {
	if t.sendOld || !t.n.b.wireable() {
		return
	}
	t.sendOld = true
	if t.needOld != nil {
		t.needOld()
	}
}

func (t *tableNode[K, V]) forward(h *Handle, k K, c Change[V]) error {
	for _, f := range t.down {
		if err := f(h, k, c); err != nil {
			return err
		}
	}
	return nil
}

// child adds an operator that consumes t. It returns nil for the zero Table.
func (t Table[K, V]) child(op string, cfg opConfig) *node {
	if t.t == nil {
		return nil
	}
	return t.t.n.b.newNode(op, t.t.n, cfg)
}

// attach adds a downstream function, unless the Builder was built.
func (t Table[K, V]) attach(f func(h *Handle, k K, c Change[V]) error) {
	if t.t.n.b.wireable() {
		t.t.down = append(t.t.down, f)
	}
}

// storeGetter returns the lookup of a materialized table kept in st.
func storeGetter[K, V any](n *node, st *storeDecl, kc codec.Codec[K], vc codec.Codec[V]) func(h *Handle, k K) (V, bool, error) {
	vd := newDecoder(vc)
	label, target := n.label(), "store "+quote(st.name)
	return func(h *Handle, k K) (V, bool, error) {
		var zero V
		store, err := h.taskStore(st)
		if err != nil {
			return zero, false, err
		}
		kb, err := kc.Encode(k)
		if err != nil {
			return zero, false, h.codecError("encode", "key", target, label, err)
		}
		vb, ok, err := store.Get(kb)
		if err != nil || !ok {
			return zero, false, err
		}
		v, err := vd.decode(vb)
		if err != nil {
			return zero, false, h.codecError("decode", "value", target, label, err)
		}
		return v, true, nil
	}
}

// SourceTable reads topic as a table: the latest value per key. A record
// with a null value (a tombstone) deletes its key, and the deletion flows
// downstream (Change.HasNew false); a tombstone of a key the table does not
// hold changes nothing. The topic should be compacted and partitioned by its
// key bytes, as Kafka's default partitioner does.
//
// The table is kept in a state store named after the operator (see Named),
// with a changelog topic "<app>-<name>-changelog"; the stage is named after
// the operator when it is the stage's first source. Store keys are the keys
// re-encoded with kc, store values the records' value bytes.
//
// A record whose key or value does not decode makes the stage's Program
// return a *CodecError, as for Source; a record with a null or empty key
// (or one kc encodes to no bytes) a *NullKeyError (ErrNullKey), since a
// table has no row for it. A topic may be read by only one Source or
// SourceTable.
func SourceTable[K, V any](b *Builder, topic string, kc codec.Codec[K], vc codec.Codec[V], opts ...Option) Table[K, V] {
	if b == nil {
		return Table[K, V]{}
	}
	n := b.newNode("SourceTable", nil, configure(opts))
	n.in = &topicRef{name: topic}
	b.checkName(n.label(), "topic", topic)
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)
	st := &storeDecl{b: b, name: n.name, generated: n.generated, by: n.label()}
	b.stores = append(b.stores, st)
	b.useStore(n, st)
	n.details = "<- " + n.in.String() + " [store " + st.name + "]"
	out := &tableNode[K, V]{n: n, kc: kc, stores: []*storeDecl{st}}
	if kc == nil || vc == nil {
		return Table[K, V]{out}
	}
	out.get = storeGetter(n, st, kc, vc)

	kd, vd := newDecoder(kc), newDecoder(vc)
	label, in, target := n.label(), "topic "+quote(topic), "store "+quote(st.name)
	n.entry = func(h *Handle, r *exec.Record) error {
		if len(r.Key) == 0 {
			return h.nullKeyError(label)
		}
		k, err := kd.decodeOwned(r.Key, r.Owned)
		if err != nil {
			return h.codecError("decode", "key", in, label, err)
		}
		var c Change[V]
		if r.Value != nil {
			if c.New, err = vd.decodeOwned(r.Value, r.Owned); err != nil {
				return h.codecError("decode", "value", in, label, err)
			}
			c.HasNew = true
		}
		kb, err := kc.Encode(k)
		if err != nil {
			return h.codecError("encode", "key", target, label, err)
		}
		if len(kb) == 0 {
			return h.nullKeyError(label)
		}
		store, err := h.taskStore(st)
		if err != nil {
			return err
		}
		old, had, err := store.Get(kb)
		if err != nil {
			return err
		}
		c.HasOld = had
		if had && out.sendOld {
			if c.Old, err = vd.decode(old); err != nil {
				return h.codecError("decode", "value", target, label, err)
			}
		}
		switch {
		case c.HasNew:
			err = store.Put(kb, r.Value)
		case had:
			err = store.Delete(kb)
		default:
			return nil // deleting a key the table does not hold
		}
		if err != nil {
			return err
		}
		return out.forward(h, k, c)
	}
	return Table[K, V]{out}
}

// ToStream returns the stream of the table's updates: one record per update,
// with the key and the new value. Deletions are not in it (a Stream has no
// null values); use Changes to see them, or TableTo to write the table,
// deletions included, to a topic.
func (t Table[K, V]) ToStream() Stream[K, V] {
	if t.t == nil {
		return Stream[K, V]{}
	}
	out := &streamNode[K, V]{n: t.t.n, keyCodec: t.t.kc}
	t.attach(func(h *Handle, k K, c Change[V]) error {
		if !c.HasNew {
			return nil
		}
		return out.forward(h, k, c.New)
	})
	return Stream[K, V]{out}
}

// Changes returns the stream of every change of the table, deletions
// included, with old and new values.
func (t Table[K, V]) Changes() Stream[K, Change[V]] {
	if t.t == nil {
		return Stream[K, Change[V]]{}
	}
	t.t.requireOld()
	out := &streamNode[K, Change[V]]{n: t.t.n, keyCodec: t.t.kc}
	t.attach(func(h *Handle, k K, c Change[V]) error { return out.forward(h, k, c) })
	return Stream[K, Change[V]]{out}
}

// TableTo writes every change of the table to topic: an update as a record
// with the new value, a deletion as a tombstone (a null value), so that a
// compacted topic holds the table and SourceTable can read it back. Keys are
// encoded with kc, values with vc; the runtime picks the partition by
// hashing the key bytes. Like To, the topic must not be read upstream.
func TableTo[K, V any](t Table[K, V], topic string, kc codec.Codec[K], vc codec.Codec[V], opts ...Option) {
	n := t.child("TableTo", configure(opts))
	if n == nil {
		return
	}
	label, target, ok := writesTopic(n, topic, kc == nil, vc == nil)
	if !ok {
		return
	}
	t.attach(func(h *Handle, k K, c Change[V]) error {
		kb, err := kc.Encode(k)
		if err != nil {
			return h.codecError("encode", "key", target, label, err)
		}
		var vb []byte // nil: a tombstone
		if c.HasNew {
			if vb, err = vc.Encode(c.New); err != nil {
				return h.codecError("encode", "value", target, label, err)
			}
			if vb == nil {
				vb = []byte{} // an empty value, not a tombstone
			}
		}
		return h.emit(topic, kb, vb)
	})
}

// derivedTable adds the operator op on t, a table computed from t's rows
// and not materialized (TableFilter, TableMapValues): lookups go to t's
// stores. It returns the operator's table node (nil for the zero Table, so
// that Table{out} is the zero Table too) and whether to wire it: not when
// its function is nil (fnNil; Build reports it) or t cannot be looked up.
func derivedTable[K, V, V2 any](t Table[K, V], op string, opts []Option, fnNil bool) (*tableNode[K, V2], bool) {
	n := t.child(op, configure(opts))
	if n == nil {
		return nil, false
	}
	checkFunc(n, "function", fnNil)
	out := &tableNode[K, V2]{n: n, kc: t.t.kc, stores: t.t.stores, needOld: t.t.requireOld, window: t.t.window}
	return out, !fnNil && t.t.get != nil
}

// TableFilter keeps the rows for which fn returns true. A row that stops
// passing is deleted from the result (a deletion flows downstream); an update
// that neither passed before nor passes now flows nowhere. The result is not
// materialized: lookups apply fn to the parent's value.
func TableFilter[K, V any](t Table[K, V], fn func(K, V) bool, opts ...Option) Table[K, V] {
	out, wire := derivedTable[K, V, V](t, "TableFilter", opts, fn == nil)
	if !wire {
		return Table[K, V]{out}
	}
	// Whether the row passed before decides whether a deletion must flow,
	// so the filter needs old values whatever its consumers need.
	t.t.requireOld()
	get := t.t.get
	out.get = func(h *Handle, k K) (V, bool, error) {
		v, ok, err := get(h, k)
		if err != nil || !ok || !fn(k, v) {
			var zero V
			return zero, false, err
		}
		return v, true, nil
	}
	t.attach(func(h *Handle, k K, c Change[V]) error {
		var o Change[V]
		if c.HasNew && fn(k, c.New) {
			o.New, o.HasNew = c.New, true
		}
		if c.HasOld && fn(k, c.Old) {
			o.Old, o.HasOld = c.Old, true
		}
		if !o.HasNew && !o.HasOld {
			return nil
		}
		return out.forward(h, k, o)
	})
	return Table[K, V]{out}
}

// TableMapValues transforms every row's value and keeps its key. The result
// is not materialized: lookups apply fn to the parent's value (and old
// values, when an operator downstream needs them, are mapped too), so fn
// must be deterministic and should be cheap.
func TableMapValues[K, V, V2 any](t Table[K, V], fn func(K, V) V2, opts ...Option) Table[K, V2] {
	out, wire := derivedTable[K, V, V2](t, "TableMapValues", opts, fn == nil)
	if !wire {
		return Table[K, V2]{out}
	}
	get := t.t.get
	out.get = func(h *Handle, k K) (V2, bool, error) {
		v, ok, err := get(h, k)
		if err != nil || !ok {
			var zero V2
			return zero, false, err
		}
		return fn(k, v), true, nil
	}
	t.attach(func(h *Handle, k K, c Change[V]) error {
		o := Change[V2]{HasOld: c.HasOld, HasNew: c.HasNew}
		if c.HasNew {
			o.New = fn(k, c.New)
		}
		if c.HasOld && out.sendOld {
			o.Old = fn(k, c.Old)
		}
		return out.forward(h, k, o)
	})
	return Table[K, V2]{out}
}
