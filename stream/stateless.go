package stream

import (
	"reflect"
	"strconv"
)

// FilterNot keeps the records for which fn returns false.
func FilterNot[K, V any](s Stream[K, V], fn func(K, V) bool, opts ...Option) Stream[K, V] {
	return sameKeyOp(s, "FilterNot", opts, fn == nil, func(out *streamNode[K, V]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			if !fn(k, v) {
				return out.forward(h, k, v)
			}
			return nil
		}
	})
}

// FlatMapValues turns every record into zero or more records with the same
// key, one per value fn returns, in order.
func FlatMapValues[K, V, V2 any](s Stream[K, V], fn func(K, V) []V2, opts ...Option) Stream[K, V2] {
	return sameKeyOp(s, "FlatMapValues", opts, fn == nil, func(out *streamNode[K, V2]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			for _, v2 := range fn(k, v) {
				if err := out.forward(h, k, v2); err != nil {
					return err
				}
			}
			return nil
		}
	})
}

// SelectKey sets every record's key to fn(key, value) and keeps its value.
// The stream is no longer partitioned by its key: a later GroupByKey
// repartitions, and a Join needs a Repartition first.
func SelectKey[K, V, K2 any](s Stream[K, V], fn func(K, V) K2, opts ...Option) Stream[K2, V] {
	return rekeyOp(s, "SelectKey", opts, fn == nil, func(out *streamNode[K2, V]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error { return out.forward(h, fn(k, v), v) }
	})
}

// Peek calls fn for every record and passes the record on unchanged. It is
// for side effects such as logging or metrics; fn runs again whenever the
// record is processed again (after an aborted transaction or a crash), so it
// must not be the only record of anything.
func Peek[K, V any](s Stream[K, V], fn func(K, V), opts ...Option) Stream[K, V] {
	return sameKeyOp(s, "Peek", opts, fn == nil, func(out *streamNode[K, V]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			fn(k, v)
			return out.forward(h, k, v)
		}
	})
}

// Branch is one branch of Split.
type Branch[K, V any] struct {
	// Name names the branch's operator in the description and in error
	// messages. Default: the Split's name and the branch's index, such as
	// "route-0". Branch names are labels only: no topic or store is named
	// after them.
	Name string
	// Pred selects the branch's records. It must not be nil.
	Pred func(K, V) bool
}

// Split routes every record of s to the first branch whose predicate returns
// true, as Kafka Streams' split().branch()...defaultBranch() does. It returns
// one stream per branch, in order, and the stream of the records no branch
// took (the default branch, named "<split>-default"); records of an unused
// stream go nowhere, so ignoring rest drops them, like noDefaultBranch.
//
// Build reports ErrInvalidArgument for a Split without branches or with a
// nil predicate.
func Split[K, V any](s Stream[K, V], branches []Branch[K, V], opts ...Option) (matched []Stream[K, V], rest Stream[K, V]) {
	n := s.child("Split", configure(opts))
	if n == nil {
		return make([]Stream[K, V], len(branches)), Stream[K, V]{}
	}
	b := n.b
	if len(branches) == 0 {
		b.fail(ErrInvalidArgument, "%s: no branches; give at least one Branch (its rest stream holds the records no branch takes)", n.label())
	}
	ok := true
	outs := make([]*streamNode[K, V], len(branches))
	matched = make([]Stream[K, V], len(branches))
	for i, br := range branches {
		name, named := n.name+"-"+strconv.Itoa(i), br.Name != ""
		if named {
			name = br.Name
		}
		bn := b.newBranchNode("Branch", n, name, named)
		if br.Pred == nil {
			ok = false
			b.fail(ErrInvalidArgument, "%s: branch %d (%s) has a nil predicate; set Branch.Pred", n.label(), i, bn.label())
		}
		outs[i] = sameKey[K, V, V](bn, s.s)
		matched[i] = Stream[K, V]{outs[i]}
	}
	dn := b.newBranchNode("Branch", n, n.name+"-default", false)
	dn.generated = n.generated
	def := sameKey[K, V, V](dn, s.s)
	if ok {
		preds := make([]func(K, V) bool, len(branches))
		for i, br := range branches {
			preds[i] = br.Pred
		}
		s.attach(func(h *Handle, k K, v V) error {
			for i, p := range preds {
				if p(k, v) {
					return outs[i].forward(h, k, v)
				}
			}
			return def.forward(h, k, v)
		})
	}
	return matched, Stream[K, V]{def}
}

// Merge merges two or more streams of one type into one: every record of
// each flows on, in the order they are processed. Streams read from
// different topics end up in one stage (a stage with several inputs), so
// those topics must be co-partitioned: the runtime checks their partition
// counts when it starts and keeps partition p of every input on one
// instance.
//
// Build reports ErrInvalidArgument for fewer than two streams and
// ErrForeignBuilder for streams of different Builders.
func Merge[K, V any](streams []Stream[K, V], opts ...Option) Stream[K, V] {
	var first Stream[K, V]
	for _, s := range streams {
		if s.s != nil {
			first = s
			break
		}
	}
	n := first.child("Merge", configure(opts))
	if n == nil {
		return Stream[K, V]{}
	}
	b := n.b
	if len(streams) < 2 {
		b.fail(ErrInvalidArgument, "%s: merges %d stream; merge two or more", n.label(), len(streams))
	}
	out := &streamNode[K, V]{n: n, keyCodec: first.s.keyCodec}
	var inputs []Stream[K, V]
	for i, s := range streams {
		switch {
		case s.s == nil:
			b.fail(ErrInvalidArgument, "%s: stream %d is the zero Stream; pass streams returned by this package", n.label(), i)
			continue
		case s.s.n.b != b:
			b.fail(ErrForeignBuilder, "%s: stream %d (from %s) belongs to another Builder; merge streams of one Builder", n.label(), i, s.s.n.label())
			continue
		}
		if len(inputs) > 0 { // the first is n's parent
			b.link(n, s.s.n)
		}
		inputs = append(inputs, s)
		if out.rekeyed == nil {
			out.rekeyed = s.s.rekeyed
		}
		if out.keyCodec != nil && (s.s.keyCodec == nil || reflect.TypeOf(s.s.keyCodec) != reflect.TypeOf(out.keyCodec)) {
			out.keyCodec = nil
		}
	}
	for _, s := range inputs {
		s.attach(func(h *Handle, k K, v V) error { return out.forward(h, k, v) })
	}
	return Stream[K, V]{out}
}

// Headers are a record's headers, in order; a key may occur more than once.
// The methods that change headers return the changed slice, like append.
type Headers []Header

// Get returns the value of the last header with key, as Kafka's
// Headers.lastHeader does.
func (hs Headers) Get(key string) (value []byte, ok bool) {
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].Key == key {
			return hs[i].Value, true
		}
	}
	return nil, false
}

// Values returns the values of every header with key, in order.
func (hs Headers) Values(key string) [][]byte {
	var vs [][]byte
	for _, h := range hs {
		if h.Key == key {
			vs = append(vs, h.Value)
		}
	}
	return vs
}

// Add appends a header.
func (hs Headers) Add(key string, value []byte) Headers {
	return append(hs, Header{Key: key, Value: value})
}

// Set replaces every header with key by one with value.
func (hs Headers) Set(key string, value []byte) Headers {
	return hs.Del(key).Add(key, value)
}

// Del removes every header with key.
func (hs Headers) Del(key string) Headers {
	out := hs[:0]
	for _, h := range hs {
		if h.Key != key {
			out = append(out, h)
		}
	}
	clear(hs[len(out):])
	return out
}

// WithHeaders sets the headers of every record: fn gets the record's key,
// value and current headers, and returns the headers the record carries from
// here on, to the operators downstream and into the topics it is written to
// (repartition topics included). Records carry their input record's headers
// until an operator changes them; each path of a fan-out keeps its own.
//
// hs is a copy fn owns and may modify and return. The returned headers
// belong to the runtime from then on: do not keep or modify them.
func WithHeaders[K, V any](s Stream[K, V], fn func(k K, v V, hs Headers) Headers, opts ...Option) Stream[K, V] {
	return sameKeyOp(s, "WithHeaders", opts, fn == nil, func(out *streamNode[K, V]) func(*Handle, K, V) error {
		return func(h *Handle, k K, v V) error {
			hs := fn(k, v, cloneHeaders(h.viewHeaders()))
			return h.withHeaders(hs, func() error { return out.forward(h, k, v) })
		}
	})
}
