package stream

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/codec"
)

// Record is the record a Process function receives: the typed key and value,
// and where the input record came from.
//
// Topic, Partition, Offset, Timestamp and Headers are those of the stage's
// input record that is being processed (Topic is the physical topic name):
// after a repartition, that is the record of the repartition topic. Headers
// belongs to the runtime and is valid only during the call; copy it to keep
// it, and do not modify it. Key and Value belong to the function. A
// []byte key or value (codec.Bytes) may share memory with the fetched
// batch it came from, so keeping a small slice of it for long keeps the
// whole batch in memory: bytes.Clone what you keep beyond the call.
//
// Headers are the headers the record carries at this point of the
// topology: the input record's, unless an operator upstream set others
// (WithHeaders). Likewise Timestamp is the record's at this point: the
// input record's, or the one its Source extracted (ExtractTimestamp), or,
// downstream of a stream-stream join or a released window, that result's.
type Record[K, V any] struct {
	Key       K
	Value     V
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Headers   Headers
}

func record[K, V any](h *Handle, k K, v V) Record[K, V] {
	r := h.rec
	return Record[K, V]{Key: k, Value: v, Topic: r.Topic, Partition: r.Partition,
		Offset: r.Offset, Timestamp: h.ts, Headers: h.viewHeaders()}
}

// StoreRef is a typed reference to a key-value state store declared with
// DeclareStore. Use it with Get, Put, Delete, Scan, Range and ScanPrefix from
// a Process function that lists it in its Uses option.
//
// Keys are stored encoded with the key codec, so scans run in the byte order
// of the encoded keys (for codec.String, lexicographic; for codec.Int64,
// numeric for non-negative numbers).
type StoreRef[K, V any] struct {
	s *typedStore[K, V]
}

type typedStore[K, V any] struct {
	d  *storeDecl
	kc codec.Codec[K]
	vc codec.Codec[V]
	kd decoder[K]
	vd decoder[V]
	// fresh: both codecs encode into new slices (freshEncoding), so Put
	// hands its encodings to the store without a copy.
	fresh bool
}

// Name returns the store's name, or "" for the zero StoreRef.
func (r StoreRef[K, V]) Name() string {
	if r.s == nil {
		return ""
	}
	return r.s.d.name
}

func (r StoreRef[K, V]) storeDecl() *storeDecl {
	if r.s == nil {
		return nil
	}
	return r.s.d
}

// AnyStoreRef is a StoreRef of any type, as Uses takes it.
type AnyStoreRef interface {
	Name() string
	storeDecl() *storeDecl
}

// OutputRef is a typed reference to an output topic declared with
// DeclareOutput. Emit to it from a Process function that lists it in its
// EmitsTo option.
type OutputRef[K, V any] struct {
	o *typedOutput[K, V]
}

type typedOutput[K, V any] struct {
	d  *outputDecl
	kc codec.Codec[K]
	vc codec.Codec[V]
}

// Topic returns the output's topic, or "" for the zero OutputRef.
func (r OutputRef[K, V]) Topic() string {
	if r.o == nil {
		return ""
	}
	return r.o.d.topic.name
}

func (r OutputRef[K, V]) outputDecl() *outputDecl {
	if r.o == nil {
		return nil
	}
	return r.o.d
}

// AnyOutputRef is an OutputRef of any type, as EmitsTo takes it.
type AnyOutputRef interface {
	Topic() string
	outputDecl() *outputDecl
}

// DeclareStore declares a key-value state store named name, whose keys are
// encoded with kc and values with vc. Its changelog topic is
// "<app>-<name>-changelog". Store names are unique in a topology, including
// the stores of Count and Aggregate.
//
// A store that no Process uses belongs to no stage; the description warns
// about it.
func DeclareStore[K, V any](b *Builder, name string, kc codec.Codec[K], vc codec.Codec[V]) StoreRef[K, V] {
	if b == nil {
		return StoreRef[K, V]{}
	}
	d := &storeDecl{b: b, name: name, by: "DeclareStore " + quote(name)}
	b.stores = append(b.stores, d)
	b.checkName(d.by, "store name", name)
	if kc == nil {
		b.fail(ErrNilCodec, "%s: key codec is nil; pass one, e.g. codec.String{}", d.by)
	}
	if vc == nil {
		b.fail(ErrNilCodec, "%s: value codec is nil; pass one, e.g. codec.String{}", d.by)
	}
	if b.built {
		b.fail(ErrBuilt, "%s called after Build; build a new topology with a new Builder", d.by)
	}
	return StoreRef[K, V]{&typedStore[K, V]{d: d, kc: kc, vc: vc, kd: newDecoder(kc), vd: newDecoder(vc),
		fresh: freshEncoding(kc) && freshEncoding(vc)}}
}

// DeclareOutput declares an output topic for Process functions, whose keys
// are encoded with kc and values with vc. Several outputs (and To) may write
// the same topic.
func DeclareOutput[K, V any](b *Builder, topic string, kc codec.Codec[K], vc codec.Codec[V]) OutputRef[K, V] {
	if b == nil {
		return OutputRef[K, V]{}
	}
	d := &outputDecl{b: b, topic: &topicRef{name: topic}}
	b.outputs = append(b.outputs, d)
	by := "DeclareOutput " + quote(topic)
	b.checkName(by, "topic", topic)
	if kc == nil {
		b.fail(ErrNilCodec, "%s: key codec is nil; pass one, e.g. codec.String{}", by)
	}
	if vc == nil {
		b.fail(ErrNilCodec, "%s: value codec is nil; pass one, e.g. codec.String{}", by)
	}
	if b.built {
		b.fail(ErrBuilt, "%s called after Build; build a new topology with a new Builder", by)
	}
	return OutputRef[K, V]{&typedOutput[K, V]{d: d, kc: kc, vc: vc}}
}

// Process runs fn for every record of s. fn reaches state stores and output
// topics through its Handle; it must list them with Uses and EmitsTo. Use
// ProcessTo to also forward records downstream.
//
// An error returned by fn hands the input record to the stage's error policy
// (the runtime discards all of the record's effects); it is wrapped with the
// processor's name and unwraps to fn's error. A panic in fn is not recovered
// here: the runtime recovers it at the stage boundary and treats it like an
// error.
//
// fn runs concurrently for different tasks (input partitions), so it must be
// safe for concurrent use; state belongs in stores, not in captured
// variables.
func Process[K, V any](s Stream[K, V], fn func(h *Handle, r Record[K, V]) error, opts ...ProcessOption) {
	n := processNode(s, "Process", opts, fn == nil)
	if n == nil || fn == nil {
		return
	}
	s.attach(func(h *Handle, k K, v V) error {
		prev := h.proc
		h.proc = n
		err := fn(h, record(h, k, v))
		h.proc = prev
		if err != nil {
			return wrapProcess(n, err)
		}
		return nil
	})
}

// Forwarder sends records from a ProcessTo function to the operators
// downstream of it. It is valid only during the call it was passed to.
type Forwarder[K, V any] struct {
	h *Handle
	s *streamNode[K, V]
}

// Forward runs the downstream operators on k and v now, before returning,
// and returns the first error one of them returns. The record carries the
// input record's timestamp and the current headers (see Record.Headers).
func (f Forwarder[K, V]) Forward(k K, v V) error {
	if f.s == nil || f.h == nil {
		return errors.New("stream: zero Forwarder: use the one passed to the ProcessTo function")
	}
	if f.h.task == nil {
		return errHandleDone()
	}
	return f.s.forward(f.h, k, v)
}

// ForwardHeaders is Forward with the headers the forwarded record carries
// downstream (and into the topics it reaches) instead of the current ones.
// hs belongs to the runtime once passed: do not modify it afterwards.
func (f Forwarder[K, V]) ForwardHeaders(k K, v V, hs Headers) error {
	if f.s == nil || f.h == nil {
		return errors.New("stream: zero Forwarder: use the one passed to the ProcessTo function")
	}
	if f.h.task == nil {
		return errHandleDone()
	}
	return f.h.withHeaders(hs, func() error { return f.s.forward(f.h, k, v) })
}

// ProcessTo is Process whose function may also forward any number of records
// downstream with fwd; it returns the stream of those records. Since the
// forwarded keys are arbitrary, a GroupByKey downstream repartitions.
func ProcessTo[K, V, K2, V2 any](s Stream[K, V], fn func(h *Handle, r Record[K, V], fwd Forwarder[K2, V2]) error, opts ...ProcessOption) Stream[K2, V2] {
	n := processNode(s, "ProcessTo", opts, fn == nil)
	if n == nil {
		return Stream[K2, V2]{}
	}
	out := &streamNode[K2, V2]{n: n, rekeyed: n}
	if fn == nil {
		return Stream[K2, V2]{out}
	}
	s.attach(func(h *Handle, k K, v V) error {
		prev := h.proc
		h.proc = n
		err := fn(h, record(h, k, v), Forwarder[K2, V2]{h: h, s: out})
		h.proc = prev
		if err != nil {
			return wrapProcess(n, err)
		}
		return nil
	})
	return Stream[K2, V2]{out}
}

// wrapProcess names the processor in err, unless err already comes wrapped
// from a processor further downstream.
func wrapProcess(n *node, err error) error {
	var pe *processError
	if errors.As(err, &pe) {
		return err
	}
	return &processError{op: n.op, name: n.name, err: err}
}

// processNode adds a Process or ProcessTo operator and resolves its Uses and
// EmitsTo options.
func processNode[K, V any](s Stream[K, V], op string, opts []ProcessOption, fnNil bool) *node {
	cfg := configure(opts)
	n := s.child(op, cfg)
	if n == nil {
		return nil
	}
	b := n.b
	n.handsHandle = true
	checkFunc(n, "function", fnNil)
	for _, tm := range cfg.timers {
		switch {
		case tm.fn == nil:
			b.fail(ErrNilFunc, "%s: Every got a nil timer function", n.label())
		case tm.interval < time.Millisecond:
			b.fail(ErrInvalidArgument, "%s: Every(%v): a timer's interval must be at least a millisecond", n.label(), tm.interval)
		case tm.clock != StreamTime && tm.clock != WallClock:
			b.fail(ErrInvalidArgument, "%s: Every got clock %d; use stream.StreamTime or stream.WallClock", n.label(), int(tm.clock))
		default:
			n.timers = append(n.timers, tm)
			n.usesTime = n.usesTime || tm.clock == StreamTime
		}
	}
	var names []string
	for _, r := range cfg.stores {
		var d *storeDecl
		if r != nil {
			d = r.storeDecl()
		}
		switch {
		case d == nil:
			b.fail(ErrUndeclaredStore, "%s: Uses got a zero StoreRef; pass one returned by stream.DeclareStore", n.label())
		case d.b != b:
			b.fail(ErrForeignBuilder, "%s: Uses store %q, which was declared on another Builder; declare it on this one", n.label(), d.name)
		case !slices.Contains(n.stores, d):
			n.stores = append(n.stores, d)
			if b.wireable() {
				d.users = append(d.users, n)
			}
			names = append(names, d.name)
		}
	}
	if len(names) > 0 {
		word := "store"
		if len(names) > 1 {
			word = "stores"
		}
		n.details = "[" + word + " " + strings.Join(names, ", ") + "]"
	}
	names = names[:0]
	for _, r := range cfg.outputs {
		var d *outputDecl
		if r != nil {
			d = r.outputDecl()
		}
		switch {
		case d == nil:
			b.fail(ErrUndeclaredOutput, "%s: EmitsTo got a zero OutputRef; pass one returned by stream.DeclareOutput", n.label())
		case d.b != b:
			b.fail(ErrForeignBuilder, "%s: EmitsTo output %q, which was declared on another Builder; declare it on this one", n.label(), d.topic.name)
		case !slices.Contains(n.emits, d):
			n.emits = append(n.emits, d)
			n.out = append(n.out, d.topic)
			if d.loop != nil {
				n.sameStage = append(n.sameStage, d.loop)
			}
			if b.wireable() {
				d.users = append(d.users, n)
			}
			names = append(names, d.topic.name)
		}
	}
	if len(names) > 0 {
		if n.details != "" {
			n.details += " "
		}
		n.details += "[emits " + strings.Join(names, ", ") + "]"
	}
	for _, tm := range n.timers {
		if n.details != "" {
			n.details += " "
		}
		n.details += fmt.Sprintf("[every %v on %s]", tm.interval, tm.clock)
	}
	return n
}
