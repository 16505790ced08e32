package stream

import (
	"reflect"
)

// Joins run where both sides meet in one task: the stream (or table) records
// of partition p look up the other table's partition p. So a join puts its
// inputs in one stage, and the stage's input topics must be co-partitioned:
// the same partition count, and keys encoded and partitioned alike. Build
// checks what the topology shows (see ErrNotCoPartitioned); the runtime
// checks the partition counts of the topics when it starts, and its task
// balancer keeps partition p of every input of a stage on one instance.

// Join joins every record of s with the value its key has in t at that
// moment: when t has one, the result fn(key, value, table value) flows
// downstream with the record's key; when it has none, the record is dropped
// (an inner join). Updates of t emit nothing: only stream records trigger
// the join, as in Kafka Streams' KStream-KTable join and goka's Join.
//
// s must still be partitioned by its key (no Map, FlatMap, SelectKey or
// ProcessTo since it was read, or a Repartition after them), and its key
// must have been encoded with the same codec as the table's; otherwise Build
// returns ErrNotCoPartitioned. The stream and the table then run in one stage,
// whose inputs the runtime checks for equal partition counts.
func Join[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], fn func(k K, v V, tv VT) VR, opts ...Option) Stream[K, VR] {
	n, out := streamTableJoin[K, V, VT, VR](s, t, "Join", opts, fn == nil)
	if n == nil || fn == nil || t.t.get == nil {
		return Stream[K, VR]{out}
	}
	get := t.t.get
	s.attach(func(h *Handle, k K, v V) error {
		tv, ok, err := get(h, k)
		if err != nil || !ok {
			return err
		}
		return out.forward(h, k, fn(k, v, tv))
	})
	return Stream[K, VR]{out}
}

// LeftJoin is Join that keeps stream records whose key t does not hold: fn
// gets ok false and the zero table value for them.
func LeftJoin[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], fn func(k K, v V, tv VT, ok bool) VR, opts ...Option) Stream[K, VR] {
	n, out := streamTableJoin[K, V, VT, VR](s, t, "LeftJoin", opts, fn == nil)
	if n == nil || fn == nil || t.t.get == nil {
		return Stream[K, VR]{out}
	}
	get := t.t.get
	s.attach(func(h *Handle, k K, v V) error {
		tv, ok, err := get(h, k)
		if err != nil {
			return err
		}
		return out.forward(h, k, fn(k, v, tv, ok))
	})
	return Stream[K, VR]{out}
}

// streamTableJoin adds a stream-table join operator and checks that its
// sides can be co-partitioned. It returns a nil node for a zero stream or
// table.
func streamTableJoin[K, V, VT, VR any](s Stream[K, V], t Table[K, VT], op string, opts []Option, fnNil bool) (*node, *streamNode[K, VR]) {
	if s.s == nil {
		return nil, nil
	}
	b := s.s.n.b
	if t.t == nil {
		n := s.child(op, configure(opts))
		b.fail(ErrInvalidArgument, "%s: the table is the zero Table; pass one returned by this package", n.label())
		return nil, &streamNode[K, VR]{n: n}
	}
	n := s.child(op, configure(opts))
	out := &streamNode[K, VR]{n: n, rekeyed: s.s.rekeyed, keyCodec: s.s.keyCodec}
	checkFunc(n, "join function", fnNil)
	if t.t.n.b != b {
		b.fail(ErrForeignBuilder, "%s: the table %s belongs to another Builder; build both sides on one", n.label(), t.t.n.label())
		return nil, out
	}
	b.link(n, t.t.n)
	for _, st := range t.t.stores {
		b.useStore(n, st)
	}
	n.details = "[" + t.t.n.label() + "]"
	if r := s.s.rekeyed; r != nil {
		b.fail(ErrNotCoPartitioned, "%s: the stream's key may have changed since it was read (after %s), so its records are not partitioned like the table %s; "+
			"re-partition the stream by its key first with stream.Repartition", n.label(), r.label(), t.t.n.label())
		return nil, out
	}
	checkKeyCodecs(n, "the stream", s.s.keyCodec, "the table "+t.t.n.label(), t.t.kc)
	return n, out
}

// checkKeyCodecs reports two sides of a join whose keys were encoded (and so
// partitioned) with codecs of different types. A nil codec is unknown, or was
// reported already.
func checkKeyCodecs(n *node, what1 string, c1 any, what2 string, c2 any) {
	if c1 == nil || c2 == nil || isNil(c1) || isNil(c2) {
		return
	}
	if t1, t2 := reflect.TypeOf(c1), reflect.TypeOf(c2); t1 != t2 {
		n.b.fail(ErrNotCoPartitioned, "%s: %s encodes its keys with %v but %s with %v, so equal keys may land in different partitions; use one key codec for both",
			n.label(), what1, t1, what2, t2)
	}
}

func isNil(c any) bool {
	v := reflect.ValueOf(c)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}

// TableJoin joins two tables on their keys: the result holds fn(key, a's
// value, b's value) for every key both hold, and changes when either side
// does (an update of one side is joined with the other side's current
// value; a deletion on either side deletes the result). The result is not
// materialized: a lookup joins the current values of both sides.
//
// Both tables run in one stage, so their topics must be co-partitioned and
// their keys encoded with the same codec (Build reports ErrNotCoPartitioned
// otherwise).
func TableJoin[K, VA, VB, VR any](a Table[K, VA], b Table[K, VB], fn func(k K, va VA, vb VB) VR, opts ...Option) Table[K, VR] {
	n, out := tableTableJoin[K, VA, VB, VR](a, b, "TableJoin", opts, fn == nil)
	if n == nil || fn == nil || a.t.get == nil || b.t.get == nil {
		return Table[K, VR]{out}
	}
	getA, getB := a.t.get, b.t.get
	out.get = func(h *Handle, k K) (VR, bool, error) {
		var zero VR
		va, ok, err := getA(h, k)
		if err != nil || !ok {
			return zero, false, err
		}
		vb, ok, err := getB(h, k)
		if err != nil || !ok {
			return zero, false, err
		}
		return fn(k, va, vb), true, nil
	}
	a.attach(func(h *Handle, k K, c Change[VA]) error {
		vb, ok, err := getB(h, k)
		if err != nil || !ok {
			return err // without b's row there was and is no result
		}
		o := Change[VR]{HasOld: c.HasOld, HasNew: c.HasNew}
		if c.HasNew {
			o.New = fn(k, c.New, vb)
		}
		if c.HasOld && out.sendOld {
			o.Old = fn(k, c.Old, vb)
		}
		return out.forward(h, k, o)
	})
	b.attach(func(h *Handle, k K, c Change[VB]) error {
		va, ok, err := getA(h, k)
		if err != nil || !ok {
			return err
		}
		o := Change[VR]{HasOld: c.HasOld, HasNew: c.HasNew}
		if c.HasNew {
			o.New = fn(k, va, c.New)
		}
		if c.HasOld && out.sendOld {
			o.Old = fn(k, va, c.Old)
		}
		return out.forward(h, k, o)
	})
	return Table[K, VR]{out}
}

// TableLeftJoin is TableJoin that keeps every key of a: fn gets ok false and
// the zero value of b for keys b does not hold. The result changes when
// either side does, for keys a holds.
func TableLeftJoin[K, VA, VB, VR any](a Table[K, VA], b Table[K, VB], fn func(k K, va VA, vb VB, ok bool) VR, opts ...Option) Table[K, VR] {
	n, out := tableTableJoin[K, VA, VB, VR](a, b, "TableLeftJoin", opts, fn == nil)
	if n == nil || fn == nil || a.t.get == nil || b.t.get == nil {
		return Table[K, VR]{out}
	}
	getA, getB := a.t.get, b.t.get
	out.get = func(h *Handle, k K) (VR, bool, error) {
		var zero VR
		va, ok, err := getA(h, k)
		if err != nil || !ok {
			return zero, false, err
		}
		vb, ok, err := getB(h, k)
		if err != nil {
			return zero, false, err
		}
		return fn(k, va, vb, ok), true, nil
	}
	a.attach(func(h *Handle, k K, c Change[VA]) error {
		vb, ok, err := getB(h, k)
		if err != nil {
			return err
		}
		o := Change[VR]{HasOld: c.HasOld, HasNew: c.HasNew}
		if c.HasNew {
			o.New = fn(k, c.New, vb, ok)
		}
		if c.HasOld && out.sendOld {
			o.Old = fn(k, c.Old, vb, ok)
		}
		return out.forward(h, k, o)
	})
	b.attach(func(h *Handle, k K, c Change[VB]) error {
		va, ok, err := getA(h, k)
		if err != nil || !ok {
			return err // no row of a: no result before or after
		}
		// a's row existed before and after this change of b.
		o := Change[VR]{HasOld: true, HasNew: true, New: fn(k, va, c.New, c.HasNew)}
		if out.sendOld {
			o.Old = fn(k, va, c.Old, c.HasOld)
		}
		return out.forward(h, k, o)
	})
	return Table[K, VR]{out}
}

// tableTableJoin adds a table-table join operator, downstream of a and b.
func tableTableJoin[K, VA, VB, VR any](a Table[K, VA], b Table[K, VB], op string, opts []Option, fnNil bool) (*node, *tableNode[K, VR]) {
	if a.t == nil {
		return nil, nil
	}
	bld := a.t.n.b
	n := a.child(op, configure(opts))
	out := &tableNode[K, VR]{n: n, kc: a.t.kc}
	checkFunc(n, "join function", fnNil)
	if b.t == nil {
		bld.fail(ErrInvalidArgument, "%s: the right table is the zero Table; pass one returned by this package", n.label())
		return nil, out
	}
	if b.t.n.b != bld {
		bld.fail(ErrForeignBuilder, "%s: the table %s belongs to another Builder; build both sides on one", n.label(), b.t.n.label())
		return nil, out
	}
	bld.link(n, b.t.n)
	for _, st := range append(append([]*storeDecl(nil), a.t.stores...), b.t.stores...) {
		bld.useStore(n, st)
	}
	out.stores = n.stores
	out.needOld = func() { a.t.requireOld(); b.t.requireOld() }
	n.details = "[" + a.t.n.label() + ", " + b.t.n.label() + "]"
	checkKeyCodecs(n, "the table "+a.t.n.label(), a.t.kc, "the table "+b.t.n.label(), b.t.kc)
	return n, out
}
