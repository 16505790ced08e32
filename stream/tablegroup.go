package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/codec"
)

// GroupedTable is a table re-keyed for an aggregation with a subtractor
// (TableAggregate, TableCount, TableReduce): the result of TableGroupBy.
type GroupedTable[K, V any] struct {
	s  *streamNode[K, Change[V]]
	kc codec.Codec[K]
	vc codec.Codec[V]
}

// TableGroupBy maps every row of t to a new key and value with fn and groups
// the rows by the new key, for TableAggregate, TableCount and TableReduce, as
// Kafka Streams' KTable.groupBy does.
//
// When a row changes, its old value must leave the group it was in and its
// new value join the group it is in now, which may live in another task. So
// for every change of t, TableGroupBy writes to a repartition topic
// ("<app>-<name>-repartition", keys encoded with kc) a record for the old
// group carrying the old value ("subtract this") and one for the new group
// carrying the new value ("add this"); when both groups are the same (the
// encoded keys are equal) it writes one record carrying both, so that the
// aggregation applies them together and emits one update. The values are
// encoded with vc inside a change envelope (see ChangeCodec). fn is called on
// the old and the new value of each change, so it must be deterministic.
//
// A change whose new group key encodes to no bytes (a null key, see
// ErrNullKey) writes nothing and fails with a *NullKeyError for the stage's
// error policy; the change's effects upstream (the table's own update) are
// discarded with it, so the table and its groups stay consistent. An old
// value whose group key is null (fn changed since the row was written) is
// in no group, so nothing is subtracted for it.
func TableGroupBy[K, V, K2, V2 any](t Table[K, V], fn func(K, V) (K2, V2), kc codec.Codec[K2], vc codec.Codec[V2], opts ...TopicOption) GroupedTable[K2, V2] {
	cfg := configure(opts)
	n := t.child("TableGroupBy", cfg)
	if n == nil {
		return GroupedTable[K2, V2]{}
	}
	checkFunc(n, "key-value function", fn == nil)
	r, topic := repartitionTopic(n, cfg)
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)
	out := &streamNode[K2, Change[V2]]{n: r, keyCodec: kc}
	if kc == nil || vc == nil {
		return GroupedTable[K2, V2]{s: out, kc: kc, vc: vc}
	}
	cc := ChangeCodec(vc)
	r.entry = sourceEntry[K2, Change[V2]](r, out, kc, cc, nil)
	if fn == nil {
		return GroupedTable[K2, V2]{s: out, kc: kc, vc: vc}
	}
	t.t.requireOld()
	label, target := n.label(), "topic "+quote(topic.name)
	t.attach(func(h *Handle, k K, c Change[V]) error {
		var oldKey, newKey []byte
		var oldV, newV V2
		var err error
		hasOld := c.HasOld
		if hasOld {
			var k2 K2
			k2, oldV = fn(k, c.Old)
			if oldKey, err = kc.Encode(k2); err != nil {
				return h.codecError("encode", "key", target, label, err)
			}
			// A null old group never received the row (its add
			// failed), so there is nothing to subtract.
			hasOld = len(oldKey) > 0
		}
		if c.HasNew {
			var k2 K2
			k2, newV = fn(k, c.New)
			if newKey, err = kc.Encode(k2); err != nil {
				return h.codecError("encode", "key", target, label, err)
			}
			if len(newKey) == 0 {
				return h.nullKeyError(label)
			}
		}
		send := func(key []byte, ch Change[V2]) error {
			vb, err := cc.Encode(ch)
			if err != nil {
				return h.codecError("encode", "value", target, label, err)
			}
			return h.emit(h.prog.topic(topic), key, vb)
		}
		if hasOld && c.HasNew && bytes.Equal(oldKey, newKey) {
			return send(newKey, Change[V2]{Old: oldV, New: newV, HasOld: true, HasNew: true})
		}
		// Subtract first, as Kafka Streams does.
		if hasOld {
			if err := send(oldKey, Change[V2]{Old: oldV, HasOld: true}); err != nil {
				return err
			}
		}
		if c.HasNew {
			return send(newKey, Change[V2]{New: newV, HasNew: true})
		}
		return nil
	})
	return GroupedTable[K2, V2]{s: out, kc: kc, vc: vc}
}

// TableAggregate folds the rows of every group of g into a value of type A,
// keeping it up to date as rows change: a row's new value is added with
// add(key, value, aggregate) (a group's first value starts from init()), its
// old value taken out with sub(key, value, aggregate). When a row moves from
// one group to another, the old group subtracts and the new one adds. A
// group whose rows are all gone keeps its last aggregate (as in Kafka
// Streams); filter it downstream if needed.
//
// The aggregates live in a state store named after the operator (see
// Named), encoded with ac, with a changelog topic "<app>-<name>-changelog".
// Every change emits the group's new aggregate downstream.
func TableAggregate[K, V, A any](g GroupedTable[K, V], init func() A, add, sub func(K, V, A) A, ac codec.Codec[A], opts ...Option) Table[K, A] {
	check := func(n *node) {
		checkFunc(n, "init function", init == nil)
		checkFunc(n, "add function", add == nil)
		checkFunc(n, "subtract function", sub == nil)
	}
	var step func(K, Change[V], A, bool) (A, bool)
	if init != nil && add != nil && sub != nil {
		step = func(k K, c Change[V], a A, had bool) (A, bool) {
			if c.HasOld && had {
				a = sub(k, c.Old, a)
			}
			if c.HasNew {
				if !had {
					a, had = init(), true
				}
				a = add(k, c.New, a)
			}
			return a, had
		}
	}
	return aggregate(Stream[K, Change[V]]{g.s}, g.kc, "TableAggregate", ac, true, opts, check, step)
}

// TableCount counts the rows of every group of g, keeping the counts up to
// date as rows change groups or are deleted. The counts live in a state store
// named after the operator as 8-byte big-endian numbers (codec.Int64).
func TableCount[K, V any](g GroupedTable[K, V], opts ...Option) Table[K, int64] {
	return aggregate(Stream[K, Change[V]]{g.s}, g.kc, "TableCount", codec.Int64{}, true, opts, nil,
		func(_ K, c Change[V], n int64, had bool) (int64, bool) {
			if c.HasOld && had {
				n--
			}
			if c.HasNew {
				n, had = n+1, true
			}
			return n, had
		})
}

// TableReduce combines the rows of every group of g into one value: a
// group's first value is its aggregate, a new value is added with
// add(aggregate, value), an old one taken out with sub(aggregate, value).
// The values live in a state store named after the operator, encoded with
// the GroupedTable's value codec.
func TableReduce[K, V any](g GroupedTable[K, V], add, sub func(agg, v V) V, opts ...Option) Table[K, V] {
	var step func(K, Change[V], V, bool) (V, bool)
	if add != nil && sub != nil {
		step = func(_ K, c Change[V], a V, had bool) (V, bool) {
			if c.HasOld && had {
				a = sub(a, c.Old)
			}
			if c.HasNew {
				if !had {
					return c.New, true
				}
				a = add(a, c.New)
			}
			return a, had
		}
	}
	return aggregate(Stream[K, Change[V]]{g.s}, g.kc, "TableReduce", g.vc, false, opts, func(n *node) {
		checkFunc(n, "add function", add == nil)
		checkFunc(n, "subtract function", sub == nil)
	}, step)
}

// The change envelope: how TableGroupBy writes a Change to its repartition
// topic.
//
//	byte 0:   changeVersion<<4 | changeOld (0x01) | changeNew (0x02)
//	if old:   uvarint(len(old)) | old    (the old value encoded with the value codec)
//	if new:   new                        (the new value, to the end of the record)
//
// At least one of old and new is present. The version nibble lets a later
// format be told apart from this one; a record with another version, unknown
// flag bits, neither value, or a length beyond the record fails to decode
// (matching codec.ErrDecode), so the stage's error policy handles it.
const (
	changeVersion = 1
	changeOld     = 0x01
	changeNew     = 0x02
)

// ChangeCodec returns the codec of the change envelope TableGroupBy writes to
// its repartition topic, with values encoded by vc: useful to read such a
// topic, or to write one in a test.
func ChangeCodec[V any](vc codec.Codec[V]) codec.Codec[Change[V]] {
	return changeCodec[V]{vc: vc, vd: newDecoder(vc)}
}

type changeCodec[V any] struct {
	vc codec.Codec[V]
	vd decoder[V]
}

var errChange = errors.New("stream: bad change envelope")

func (c changeCodec[V]) Encode(ch Change[V]) ([]byte, error) {
	if !ch.HasOld && !ch.HasNew {
		return nil, fmt.Errorf("%w: a change with neither an old nor a new value", errChange)
	}
	flags := byte(changeVersion << 4)
	var old, nw []byte
	var err error
	if ch.HasOld {
		flags |= changeOld
		if old, err = c.vc.Encode(ch.Old); err != nil {
			return nil, err
		}
	}
	if ch.HasNew {
		flags |= changeNew
		if nw, err = c.vc.Encode(ch.New); err != nil {
			return nil, err
		}
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(old)+len(nw))
	b = append(b, flags)
	if ch.HasOld {
		b = binary.AppendUvarint(b, uint64(len(old)))
		b = append(b, old...)
	}
	return append(b, nw...), nil
}

func (c changeCodec[V]) Decode(b []byte) (Change[V], error) {
	var ch Change[V]
	if len(b) == 0 {
		return ch, fmt.Errorf("%w: %w: empty record", codec.ErrDecode, errChange)
	}
	flags := b[0]
	if v := flags >> 4; v != changeVersion {
		return ch, fmt.Errorf("%w: %w: version %d, want %d", codec.ErrDecode, errChange, v, changeVersion)
	}
	if flags&0x0f&^(changeOld|changeNew) != 0 || flags&(changeOld|changeNew) == 0 {
		return ch, fmt.Errorf("%w: %w: flags %#02x", codec.ErrDecode, errChange, flags)
	}
	b = b[1:]
	var err error
	if flags&changeOld != 0 {
		n, used := binary.Uvarint(b)
		if used <= 0 || n > uint64(len(b)-used) {
			return ch, fmt.Errorf("%w: %w: bad length of the old value", codec.ErrDecode, errChange)
		}
		old := b[used : used+int(n)]
		b = b[used+int(n):]
		if ch.Old, err = c.vd.decode(old); err != nil {
			return ch, err
		}
		ch.HasOld = true
	}
	if flags&changeNew != 0 {
		if ch.New, err = c.vd.decode(b); err != nil {
			return ch, err
		}
		ch.HasNew = true
	} else if len(b) > 0 {
		return ch, fmt.Errorf("%w: %w: %d bytes after the old value", codec.ErrDecode, errChange, len(b))
	}
	return ch, nil
}
