package stream

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
)

// GlobalTable is a full copy of a topic that every instance of the
// application keeps: the latest value per key of every partition. Lookups
// in it need no co-partitioning, so a stream can look up any key, whatever
// partition the stream record and the key are in (goka's Lookup, Kafka
// Streams' GlobalKTable). Make one with SourceGlobalTable; read it with
// GlobalJoin, GlobalLeftJoin, or Lookup from a Process function.
//
// A global table is not part of any stage: no stage consumes its topic as a
// task input, and it has no changelog (its topic is its changelog). The
// runtime reads the topic up to its end before the stages start, and then
// follows it in the background.
//
// # Consistency
//
// A global table is eventually consistent with its topic. A join reads
// whatever the instance's copy holds when the record is processed, as in
// Kafka Streams. The exactly-once guarantee covers a stage's own state and
// outputs, not the timing of global tables: a record processed again after
// a crash or an aborted transaction may be joined with a newer value than
// the first time, and two instances may see a change of the table at
// different moments. Use a co-partitioned Join when a lookup must be
// repeatable.
//
// Like Table, the zero GlobalTable belongs to no Builder; only use global
// tables returned by SourceGlobalTable.
type GlobalTable[K, V any] struct {
	g *globalNode[K, V]
}

// globalNode is the typed side of a global table.
type globalNode[K, V any] struct {
	d  *globalDecl
	kc codec.Codec[K]
	vd decoder[V]
}

// globalDecl is a global table as Build, the description and the runtime
// see it.
type globalDecl struct {
	n     *node // the SourceGlobalTable operator: in no stage
	topic *topicRef
	users []*node // the operators that look keys up in it (GlobalJoin, GlobalLeftJoin)
}

// SourceGlobalTable reads topic as a global table: every instance keeps the
// latest value of every key of every partition of topic, and a record with
// a null value (a tombstone) deletes its key. The topic should be compacted;
// it need not be partitioned like anything else. Keys are looked up by
// their encoding with kc, so kc must encode keys as they are written to the
// topic.
//
// The table is named after the operator (see Named); the name keys the local
// copy. A value that does not decode fails the lookup of its key (the
// looking-up record goes to its stage's error policy); records of the topic
// are stored as bytes and never decoded otherwise.
//
// The runtime checks that topic exists when it starts. A topic may be read
// by only one SourceGlobalTable (a Source or SourceTable may read it too).
func SourceGlobalTable[K, V any](b *Builder, topic string, kc codec.Codec[K], vc codec.Codec[V], opts ...Option) GlobalTable[K, V] {
	if b == nil {
		return GlobalTable[K, V]{}
	}
	n := b.newNode("SourceGlobalTable", nil, configure(opts))
	b.checkName(n.label(), "topic", topic)
	checkCodec(n, "key codec", kc == nil)
	checkCodec(n, "value codec", vc == nil)
	d := &globalDecl{n: n, topic: &topicRef{name: topic}}
	n.details = "<- " + d.topic.String()
	if b.wireable() {
		b.globals = append(b.globals, d)
	}
	g := &globalNode[K, V]{d: d, kc: kc}
	if vc != nil {
		g.vd = newDecoder(vc)
	}
	return GlobalTable[K, V]{g}
}

// get returns the value of k in the instance's copy of the table.
// operator names the operator looking up, for codec errors.
func (g *globalNode[K, V]) get(h *Handle, k K, operator string) (V, bool, error) {
	var zero V
	rs, err := h.globalStore(g.d)
	if err != nil {
		return zero, false, err
	}
	target := "global table " + quote(g.d.n.name)
	kb, err := g.kc.Encode(k)
	if err != nil {
		return zero, false, h.codecError("encode", "key", target, operator, err)
	}
	vb, ok, err := rs.Get(kb)
	if err != nil || !ok {
		return zero, false, err
	}
	v, err := g.vd.decode(vb)
	if err != nil {
		return zero, false, h.codecError("decode", "value", target, operator, err)
	}
	return v, true, nil
}

// globalStore returns the runtime's copy of global table d.
func (h *Handle) globalStore(d *globalDecl) (exec.ReadStore, error) {
	if h.task == nil {
		return nil, errHandleDone()
	}
	var rs exec.ReadStore
	if gt, ok := h.task.(exec.GlobalTask); ok {
		rs = gt.Global(d.n.name)
	}
	if rs == nil {
		return nil, fmt.Errorf("stream: the runtime keeps no global table %q (stage %q reads it); run the topology with a runtime that supports global tables",
			d.n.name, h.prog.stage.Name)
	}
	return rs, nil
}

// GlobalJoin joins every record of s with a value of g: key maps the record
// to a key of g, and when g holds that key, fn(key, value, g's value) flows
// downstream with the record's key; when g lacks it, the record is dropped
// (an inner join). Updates of g emit nothing.
//
// Unlike Join, s needs no co-partitioning: it may have been re-keyed (the
// result keeps s's key and partitioning), and g runs in no stage, so no
// repartition topic is inserted. The lookup reads the instance's copy of g
// as it is when the record is processed; see GlobalTable for what that
// means after a crash.
func GlobalJoin[K, V, GK, GV, VR any](s Stream[K, V], g GlobalTable[GK, GV], key func(K, V) GK, fn func(k K, v V, gv GV) VR, opts ...Option) Stream[K, VR] {
	n, out := globalJoin[K, V, GK, GV, VR](s, g, "GlobalJoin", opts, key == nil, fn == nil)
	if n == nil || key == nil || fn == nil {
		return Stream[K, VR]{out}
	}
	label := n.label()
	s.attach(func(h *Handle, k K, v V) error {
		gv, ok, err := g.g.get(h, key(k, v), label)
		if err != nil || !ok {
			return err
		}
		return out.forward(h, k, fn(k, v, gv))
	})
	return Stream[K, VR]{out}
}

// GlobalLeftJoin is GlobalJoin that keeps the records whose key g lacks: fn
// gets ok false and the zero value of GV for them.
func GlobalLeftJoin[K, V, GK, GV, VR any](s Stream[K, V], g GlobalTable[GK, GV], key func(K, V) GK, fn func(k K, v V, gv GV, ok bool) VR, opts ...Option) Stream[K, VR] {
	n, out := globalJoin[K, V, GK, GV, VR](s, g, "GlobalLeftJoin", opts, key == nil, fn == nil)
	if n == nil || key == nil || fn == nil {
		return Stream[K, VR]{out}
	}
	label := n.label()
	s.attach(func(h *Handle, k K, v V) error {
		gv, ok, err := g.g.get(h, key(k, v), label)
		if err != nil {
			return err
		}
		return out.forward(h, k, fn(k, v, gv, ok))
	})
	return Stream[K, VR]{out}
}

// globalJoin adds a stream-global table join operator. It returns a nil
// node when the join cannot be wired (the mistake is recorded).
func globalJoin[K, V, GK, GV, VR any](s Stream[K, V], g GlobalTable[GK, GV], op string, opts []Option, keyNil, fnNil bool) (*node, *streamNode[K, VR]) {
	n := s.child(op, configure(opts))
	if n == nil {
		return nil, nil
	}
	out := sameKey[K, V, VR](n, s.s)
	checkFunc(n, "key function", keyNil)
	checkFunc(n, "join function", fnNil)
	if g.g == nil {
		n.b.fail(ErrInvalidArgument, "%s: the global table is the zero GlobalTable; pass one returned by stream.SourceGlobalTable", n.label())
		return nil, out
	}
	if g.g.d.n.b != n.b {
		n.b.fail(ErrForeignBuilder, "%s: the global table %s belongs to another Builder; build both on one", n.label(), g.g.d.n.label())
		return nil, out
	}
	n.details = "[global " + g.g.d.n.label() + "]"
	if n.b.wireable() {
		g.g.d.users = append(g.g.d.users, n)
	}
	if g.g.kc == nil || g.g.vd.c == nil {
		return nil, out // Build fails: ErrNilCodec
	}
	return n, out
}

// Lookup returns the value of key k in global table g, and false when g
// does not hold it, from a Process or ProcessTo function: goka's
// ctx.Lookup. Unlike stores, global tables need no Uses option: a lookup
// reads the instance's copy of g as it is at the moment of the call, and
// writes nothing (see GlobalTable for the consistency this gives).
//
// It returns a *CodecError when k does not encode or the value does not
// decode, and an error wrapping ErrInvalidArgument for the zero GlobalTable
// or a global table of another Builder.
func Lookup[K, V any](h *Handle, g GlobalTable[K, V], k K) (V, bool, error) {
	var zero V
	switch {
	case h == nil:
		return zero, false, errors.New("stream: nil Handle: use the one passed to the Process function")
	case h.task == nil:
		return zero, false, errHandleDone()
	case g.g == nil:
		return zero, false, errorf(ErrInvalidArgument, "Lookup in the zero GlobalTable; use one returned by stream.SourceGlobalTable")
	case len(h.prog.stage.nodes) > 0 && h.prog.stage.nodes[0].b != g.g.d.n.b:
		return zero, false, errorf(ErrInvalidArgument, "Lookup in global table %q of another Builder", g.g.d.n.name)
	}
	operator := "Lookup"
	if h.proc != nil {
		operator = h.proc.label()
	}
	return g.g.get(h, k, operator)
}

// checkGlobals reports global tables that read the same topic.
func (b *Builder) checkGlobals() []error {
	var errs []error
	seen := map[string]*globalDecl{}
	for _, d := range b.globals {
		if o, ok := seen[d.topic.name]; ok {
			errs = append(errs, errorf(ErrNameClash, "topic %q is read by %s and by %s; read it with one SourceGlobalTable and use the table twice",
				d.topic.name, o.n.label(), d.n.label()))
			continue
		}
		seen[d.topic.name] = d
	}
	return errs
}

// globalSpecs returns the runtime's view of b's global tables.
func (b *Builder) globalSpecs() []topology.Global {
	var specs []topology.Global
	for _, d := range b.globals {
		specs = append(specs, topology.Global{Name: d.n.name, GeneratedName: d.n.generated, Topic: d.topic.name})
	}
	return specs
}

// globalsOf returns the global tables n looks keys up in.
func globalsOf(n *node) []*globalDecl {
	var ds []*globalDecl
	for _, d := range n.b.globals {
		if slices.Contains(d.users, n) {
			ds = append(ds, d)
		}
	}
	return ds
}

// stageGlobals returns the names of the global tables that s's joins read.
func stageGlobals(s *Stage) []string {
	var names []string
	for _, n := range s.nodes {
		for _, d := range globalsOf(n) {
			if !slices.Contains(names, d.n.name) {
				names = append(names, d.n.name)
			}
		}
	}
	return names
}

// describeGlobals writes the global tables of b for the description, and
// returns the warnings about them.
func describeGlobals(w *strings.Builder, b *Builder) (warnings []string) {
	for _, d := range b.globals {
		fmt.Fprintf(w, "Global table %q <- %s (a full copy on every instance)\n", d.n.name, d.topic.String())
		if len(d.users) > 0 {
			labels := make([]string, len(d.users))
			for i, u := range d.users {
				labels[i] = u.label()
			}
			fmt.Fprintf(w, "  read by: %s\n", strings.Join(labels, ", "))
		}
		if d.n.generated {
			warnings = append(warnings, fmt.Sprintf("global table %q has a generated name: renaming it later makes every instance read its topic again and leaves the old copy in the state directory; name its SourceGlobalTable with stream.Named", d.n.name))
		}
	}
	return warnings
}

func dotGlobal(d *globalDecl) string { return dotQuote("global:" + d.n.name) }
