package stream

import (
	"github.com/sluicehq/sluice/codec"
)

const loopSuffix = "-loop"

// Loop is an internal topic that a stage writes and reads itself, as goka's
// Loop edge is: records sent to it come back to the same stage, in the task
// of their key, after the transaction that wrote them commits (the stage
// reads it read_committed like any input). Use it to re-key work inside a
// stage without a second stage, or to feed results back, e.g. to process a
// key's records again later.
//
// Declare it with DeclareLoop, read it with Stream, and write it with LoopTo
// or, from a Process function, with Emit to its Output. Its writers and its
// reader always run in one stage (Build merges their stages), and that
// stage's reading its own output is not a cycle. Writing to a topic the
// stage reads without a declared loop still is (Build returns ErrCycle).
//
// A loop that never stops re-emitting keeps the stage busy forever; sluice
// does not detect that.
type Loop[K, V any] struct {
	l *loopNode[K, V]
}

type loopNode[K, V any] struct {
	n   *node // the reading side
	s   *streamNode[K, V]
	t   *topicRef
	kc  codec.Codec[K]
	vc  codec.Codec[V]
	out OutputRef[K, V]
}

// DeclareLoop declares a loop whose records have keys encoded with kc and
// values with vc. Its topic is internal, created by the runtime and named
// "<app>-<name>-loop", with name from Named (or generated: name it, since
// renaming it later loses the records in it); Partitions sets its partition
// count, which must equal that of the stage's other inputs (the default).
//
// The loop's reading side is a source of the stage: when it is the stage's
// first source, the stage is named after the loop.
func DeclareLoop[K, V any](b *Builder, kc codec.Codec[K], vc codec.Codec[V], opts ...TopicOption) Loop[K, V] {
	if b == nil {
		return Loop[K, V]{}
	}
	cfg := configure(opts)
	n := b.newNode("Loop", nil, cfg)
	t := &topicRef{name: n.name + loopSuffix, internal: true, generated: n.generated, loop: true}
	if cfg.partSet {
		if cfg.partitions < 1 {
			b.fail(ErrInvalidArgument, "%s: Partitions(%d): a topic needs at least 1 partition", n.label(), cfg.partitions)
		} else {
			t.partitions = cfg.partitions
		}
	}
	n.in = t
	n.details = "<- " + t.String()
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)
	s := &streamNode[K, V]{n: n, keyCodec: kc}
	n.entry = sourceEntry(n, s, kc, vc, nil)
	d := &outputDecl{b: b, topic: t, loop: n}
	out := OutputRef[K, V]{&typedOutput[K, V]{d: d, kc: kc, vc: vc}}
	return Loop[K, V]{&loopNode[K, V]{n: n, s: s, t: t, kc: kc, vc: vc, out: out}}
}

// Stream returns the records that come back through the loop.
func (l Loop[K, V]) Stream() Stream[K, V] {
	if l.l == nil {
		return Stream[K, V]{}
	}
	return Stream[K, V]{l.l.s}
}

// Output returns the loop as an output for Process functions: list it in
// EmitsTo and Emit to it.
func (l Loop[K, V]) Output() OutputRef[K, V] {
	if l.l == nil {
		return OutputRef[K, V]{}
	}
	return l.l.out
}

// Topic returns the loop topic's logical name, "<name>-loop"; the physical
// name is "<app>-<name>-loop". It returns "" for the zero Loop.
func (l Loop[K, V]) Topic() string {
	if l.l == nil {
		return ""
	}
	return l.l.t.name
}

// LoopTo writes every record of s to the loop l, partitioned by the hash of
// its encoded key. s's stage and l's stage become one.
func LoopTo[K, V any](s Stream[K, V], l Loop[K, V], opts ...Option) {
	n := s.child("LoopTo", configure(opts))
	if n == nil {
		return
	}
	b := n.b
	if l.l == nil {
		b.fail(ErrInvalidArgument, "%s: the loop is the zero Loop; pass one returned by stream.DeclareLoop", n.label())
		return
	}
	if l.l.n.b != b {
		b.fail(ErrForeignBuilder, "%s: the loop %s belongs to another Builder; declare it on this one", n.label(), l.l.n.label())
		return
	}
	t := l.l.t
	n.out = append(n.out, t)
	n.sameStage = append(n.sameStage, l.l.n)
	n.details = "-> " + t.String()
	kc, vc := l.l.kc, l.l.vc
	if kc == nil || vc == nil {
		return
	}
	label, target := n.label(), "topic "+quote(t.name)
	ke, ve := newEncoder(kc), newEncoder(vc)
	s.attach(func(h *Handle, k K, v V) error {
		kb, vb, err := encodeRecord(h, ke, ve, k, v, target, label)
		if err != nil {
			return err
		}
		if kb == nil {
			// A key of no bytes is written as an empty key, which the
			// runtime's producer and the test driver both hash; a nil
			// key would be spread over the loop's partitions.
			kb = []byte{}
		}
		return h.emit(h.prog.topic(t), kb, vb)
	})
}
