package stream

import (
	"reflect"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
)

// Stream is an unbounded sequence of typed key-value records flowing out of an
// operator. Streams are values: pass them to the operator functions (Map,
// Filter, GroupBy, To, ...); using one stream several times fans its records
// out to every consumer, in the order the consumers were added.
//
// The zero Stream belongs to no Builder; operators given one do nothing and
// return zero values, and since nothing can record that mistake, nothing
// reports it. Only use streams returned by this package.
type Stream[K, V any] struct {
	s *streamNode[K, V]
}

// KeyValue is one record produced by a FlatMap function.
type KeyValue[K, V any] struct {
	Key   K
	Value V
}

// streamNode is the typed side of an operator's output: the functions
// that consume its records, compiled at DSL time so that the per-record path
// has no boxing and no reflection.
type streamNode[K, V any] struct {
	n    *node
	down []func(h *Handle, k K, v V) error
	// rekeyed is the operator after which the key may differ from the key
	// the record had in the topic it was read from (Map, FlatMap,
	// SelectKey, ProcessTo), or nil: then the stream is still partitioned
	// by its key, GroupByKey groups in place and joins need no repartition.
	rekeyed *node
	// keyCodec is the codec (a codec.Codec[K]) whose encoding of the key
	// partitioned the topic the records were read from, or nil when unknown
	// (after a re-key, or a Merge of streams read with different codecs).
	// Joins compare it with the table's.
	keyCodec any
}

// sameKey returns the output of operator n, which keeps the keys of s.
func sameKey[K, V, V2 any](n *node, s *streamNode[K, V]) *streamNode[K, V2] {
	return &streamNode[K, V2]{n: n, rekeyed: s.rekeyed, keyCodec: s.keyCodec}
}

// forward hands a record to every downstream operator, stopping at the first
// error.
func (s *streamNode[K, V]) forward(h *Handle, k K, v V) error {
	for _, f := range s.down {
		if err := f(h, k, v); err != nil {
			return err
		}
	}
	return nil
}

// child adds an operator that consumes s. It returns nil for the zero Stream.
func (s Stream[K, V]) child(op string, cfg opConfig) *node {
	if s.s == nil {
		return nil
	}
	return s.s.n.b.newNode(op, s.s.n, cfg)
}

// writesTopic makes operator n (To, TableTo) write user topic topic, with a
// key codec and a value codec that Build reports when nil. It returns what
// the operator's codec errors name, and whether both codecs are there (only
// then is the operator wired).
func writesTopic(n *node, topic string, kcNil, vcNil bool) (label, target string, ok bool) {
	t := &topicRef{name: topic}
	n.out = append(n.out, t)
	n.details = "-> " + t.String()
	n.b.checkName(n.label(), "topic", topic)
	checkCodec(n, "key codec", kcNil)
	checkCodec(n, "value codec", vcNil)
	return n.label(), "topic " + quote(topic), !kcNil && !vcNil
}

// rekeyOp adds the stateless operator op on s, whose records may leave with
// another key (Map, FlatMap, SelectKey), so that a later GroupByKey or Join
// repartitions. wire returns what the operator does with one record,
// forwarding to out; it is called only when fnNil is false, as Build
// reports a nil function.
func rekeyOp[K, V, K2, V2 any](s Stream[K, V], op string, opts []Option, fnNil bool,
	wire func(out *streamNode[K2, V2]) func(*Handle, K, V) error) Stream[K2, V2] {
	n := s.child(op, configure(opts))
	if n == nil {
		return Stream[K2, V2]{}
	}
	checkFunc(n, "function", fnNil)
	out := &streamNode[K2, V2]{n: n, rekeyed: n}
	if !fnNil {
		s.attach(wire(out))
	}
	return Stream[K2, V2]{out}
}

// sameKeyOp adds the stateless operator op on s, whose records keep their
// key (MapValues, Filter, Peek, ...), so the stream stays partitioned as s
// is. wire is as for rekeyOp.
func sameKeyOp[K, V, V2 any](s Stream[K, V], op string, opts []Option, fnNil bool,
	wire func(out *streamNode[K, V2]) func(*Handle, K, V) error) Stream[K, V2] {
	n := s.child(op, configure(opts))
	if n == nil {
		return Stream[K, V2]{}
	}
	checkFunc(n, "function", fnNil)
	out := sameKey[K, V, V2](n, s.s)
	if !fnNil {
		s.attach(wire(out))
	}
	return Stream[K, V2]{out}
}

// attach adds a downstream function, unless the Builder was built.
func (s Stream[K, V]) attach(f func(h *Handle, k K, v V) error) {
	if s.s.n.b.wireable() {
		s.s.down = append(s.s.down, f)
	}
}

// Source reads topic, decoding keys with kc and values with vc. Each Source
// starts a stage (unless a shared store joins it to another); the stage is
// named after the Source's name (see Named), so give it one.
//
// A record whose key or value does not decode makes the stage's Program
// return a *CodecError, which matches codec.ErrDecode; the runtime's error
// policy decides what happens to the record. A topic may be read by only one
// Source.
func Source[K, V any](b *Builder, topic string, kc codec.Codec[K], vc codec.Codec[V], opts ...SourceOption) Stream[K, V] {
	if b == nil {
		return Stream[K, V]{}
	}
	cfg := configure(opts)
	n := b.newNode("Source", nil, cfg)
	n.in = &topicRef{name: topic}
	b.checkName(n.label(), "topic", topic)
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)
	var extract func(K, V, time.Time) time.Time
	if cfg.extractor != nil {
		f, ok := cfg.extractor.(func(K, V, time.Time) time.Time)
		switch {
		case !ok:
			b.fail(ErrInvalidArgument, "%s: ExtractTimestamp got a %T, but the Source reads %s keys and %s values; pass a func(%[3]s, %[4]s, time.Time) time.Time",
				n.label(), cfg.extractor, typeName[K](), typeName[V]())
		case f == nil:
			b.fail(ErrNilFunc, "%s: ExtractTimestamp got a nil function", n.label())
		default:
			extract = f
			n.details = "<- " + n.in.String() + " [timestamps extracted]"
		}
	}
	out := &streamNode[K, V]{n: n, keyCodec: kc}
	n.entry = sourceEntry(n, out, kc, vc, extract)
	return Stream[K, V]{out}
}

type extractOpt struct{ fn any }

func (o extractOpt) apply(c *opConfig) { c.extractor = o.fn }
func (extractOpt) sourceOption()       {}

// ExtractTimestamp makes a Source take its records' timestamps from fn
// instead of the Kafka records' own (fn gets the decoded key and value and
// the Kafka timestamp). The extracted timestamp is the record's from then
// on: windows and stream time use it, Process functions see it in
// Record.Timestamp, and the records the stage writes carry it. Its type
// parameters must be the Source's (Build reports ErrInvalidArgument
// otherwise). fn must be deterministic: a record processed again after a
// crash must get the same timestamp.
func ExtractTimestamp[K, V any](fn func(k K, v V, recordTime time.Time) time.Time) SourceOption {
	return extractOpt{fn}
}

func typeName[T any]() string { return reflect.TypeFor[T]().String() }

// sourceEntry compiles the decoding of one input topic's records. extract,
// when not nil, sets the record's timestamp.
func sourceEntry[K, V any](n *node, out *streamNode[K, V], kc codec.Codec[K], vc codec.Codec[V], extract func(K, V, time.Time) time.Time) func(h *Handle, r *exec.Record) error {
	if kc == nil || vc == nil {
		return nil // Build fails; no Program is ever compiled
	}
	kd, vd := newDecoder(kc), newDecoder(vc)
	label, target := n.label(), "topic "+quote(n.in.name)
	return func(h *Handle, r *exec.Record) error {
		k, err := kd.decodeOwned(r.Key, r.Owned)
		if err != nil {
			return h.codecError("decode", "key", target, label, err)
		}
		v, err := vd.decodeOwned(r.Value, r.Owned)
		if err != nil {
			return h.codecError("decode", "value", target, label, err)
		}
		if extract != nil {
			h.ts = extract(k, v, r.Timestamp)
			h.tm.input = millis(h.ts)
		}
		return out.forward(h, k, v)
	}
}

// Map transforms every record's key and value. The key may change, so a
// later GroupByKey repartitions.
func Map[K, V, K2, V2 any](s Stream[K, V], fn func(K, V) (K2, V2), opts ...Option) Stream[K2, V2] {
	return rekeyOp(s, "Map", opts, fn == nil, func(out *streamNode[K2, V2]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			k2, v2 := fn(k, v)
			return out.forward(h, k2, v2)
		}
	})
}

// MapValues transforms every record's value and keeps its key.
func MapValues[K, V, V2 any](s Stream[K, V], fn func(K, V) V2, opts ...Option) Stream[K, V2] {
	return sameKeyOp(s, "MapValues", opts, fn == nil, func(out *streamNode[K, V2]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error { return out.forward(h, k, fn(k, v)) }
	})
}

// Filter keeps the records for which fn returns true.
func Filter[K, V any](s Stream[K, V], fn func(K, V) bool, opts ...Option) Stream[K, V] {
	return sameKeyOp(s, "Filter", opts, fn == nil, func(out *streamNode[K, V]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			if fn(k, v) {
				return out.forward(h, k, v)
			}
			return nil
		}
	})
}

// FlatMap turns every record into zero or more records, in the order fn
// returns them. The key may change, so a later GroupByKey repartitions.
func FlatMap[K, V, K2, V2 any](s Stream[K, V], fn func(K, V) []KeyValue[K2, V2], opts ...Option) Stream[K2, V2] {
	return rekeyOp(s, "FlatMap", opts, fn == nil, func(out *streamNode[K2, V2]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			for _, kv := range fn(k, v) {
				if err := out.forward(h, kv.Key, kv.Value); err != nil {
					return err
				}
			}
			return nil
		}
	})
}

// To writes every record to topic, encoding keys with kc and values with vc.
// The runtime picks the partition by hashing the key bytes (as Kafka's
// default partitioner does). Outputs carry the input record's timestamp and
// the current headers (see WithHeaders). A topic written by To must not be
// read by a Source of the same topology upstream of it (Build reports the
// cycle).
func To[K, V any](s Stream[K, V], topic string, kc codec.Codec[K], vc codec.Codec[V], opts ...Option) {
	n := s.child("To", configure(opts))
	if n == nil {
		return
	}
	label, target, ok := writesTopic(n, topic, kc == nil, vc == nil)
	if !ok {
		return
	}
	ke, ve := newEncoder(kc), newEncoder(vc)
	s.attach(func(h *Handle, k K, v V) error {
		kb, vb, err := encodeRecord(h, ke, ve, k, v, target, label)
		if err != nil {
			return err
		}
		return h.emit(topic, kb, vb)
	})
}

// encodeRecord encodes an output record's key and value for the operator
// named label, which writes them to target; a failure is a *CodecError.
func encodeRecord[K, V any](h *Handle, ke encoder[K], ve encoder[V], k K, v V, target, label string) (kb, vb []byte, err error) {
	if kb, err = ke.encode(h, k); err != nil {
		return nil, nil, h.codecError("encode", "key", target, label, err)
	}
	if vb, err = ve.encode(h, v); err != nil {
		return nil, nil, h.codecError("encode", "value", target, label, err)
	}
	return kb, vb, nil
}
