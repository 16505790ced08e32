package stream

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
)

// Builder collects the operators of a topology. Create one with NewBuilder,
// declare sources, operators, stores and outputs with the package's
// functions, and call Build once.
//
// DSL calls never panic and never fail: a mistake (a nil codec, an empty name,
// a store of another Builder) is recorded on the Builder and Build reports all
// of them together. A Builder is not safe for concurrent use; the Topology it
// builds is.
type Builder struct {
	nodes   []*node
	stores  []*storeDecl
	outputs []*outputDecl
	globals []*globalDecl // SourceGlobalTable, in declaration order
	errs    []error
	seq     int // position of the next user-visible operator, for generated names
	built   bool
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder { return &Builder{} }

// topicRef is a topic an operator reads or writes.
type topicRef struct {
	name       string // logical name
	internal   bool   // a repartition or loop topic: physical name is app + "-" + name
	generated  bool   // the name was generated, not given with Named
	loop       bool   // a declared loop: read by the stage that writes it
	partitions int    // an internal topic's partition count from Partitions; 0: inherit
}

func (t *topicRef) ref() topology.TopicRef {
	return topology.TopicRef{Name: t.name, Internal: t.internal, Partitions: t.partitions}
}

func (t *topicRef) String() string {
	if t.internal {
		return t.name + " (internal)"
	}
	return t.name
}

// node is one operator in the graph. The typed execution closures live in the
// streamNodes; a node carries what Build and the description need.
//
// INVARIANT: after a successful Build no node, and no streamNode's list of
// downstream functions, changes: compiled Programs read them concurrently.
type node struct {
	b         *Builder
	id        int    // index in b.nodes
	op        string // the DSL function that made it: "Source", "Map", ...
	name      string
	generated bool
	parent    *node   // the operator whose stream this one consumes; nil for sources
	others    []*node // further inputs: the other streams of Merge, the table of a join
	children  []*node // in creation order
	// sameStage are operators this one must share a stage with, though no
	// stream connects them: the reading side of a loop it writes.
	sameStage []*node

	// in is the topic a source (Source or the reading side of a
	// repartition) consumes; entry decodes one of its records and runs the
	// operators downstream.
	in    *topicRef
	entry func(h *Handle, r *exec.Record) error
	// derived marks the reading side of a repartition: it carries the
	// GroupBy's name and takes no place in the operator namespace.
	derived bool
	writer  *node // for a derived node: the GroupBy (GroupByKey) that writes its topic

	out    []*topicRef   // topics written: To, GroupBy, EmitsTo, LoopTo
	stores []*storeDecl  // stores used: Count, Aggregate, Uses, tables and joins
	emits  []*outputDecl // outputs declared with EmitsTo
	// usesTime marks an operator that needs its task's stream time
	// (windows, suppression, stream-stream joins, stream-time timers): its
	// stage keeps it in a store (Stage.timeStore).
	usesTime  bool
	timeHooks []timeHook // run when stream time advances
	timers    []timer    // Every, on Process and ProcessTo
	// handsHandle marks an operator that passes its Handle to user code
	// (Process, ProcessTo), which might keep it past the call.
	handsHandle bool
	details     string // extra text for the description
}

// label is how messages and the description name the node, e.g. `Count "counts"`.
func (n *node) label() string { return fmt.Sprintf("%s %q", n.op, n.name) }

// storeDecl is a state store: declared with DeclareStore, or made by Count or
// Aggregate.
type storeDecl struct {
	b         *Builder
	name      string
	generated bool
	by        string  // what declared it, for messages: `DeclareStore`, `Count "counts"`
	users     []*node // operators that use it
}

// outputDecl is an output declared with DeclareOutput (or the output side of
// a Loop).
type outputDecl struct {
	b     *Builder
	topic *topicRef
	users []*node
	loop  *node // for a Loop's output: the loop's reading side
}

// fail records a problem for Build to report.
func (b *Builder) fail(kind error, format string, args ...any) {
	b.errs = append(b.errs, errorf(kind, format, args...))
}

// newNode adds an operator. parent is nil for sources. The caller wires the
// typed closures only if b.wireable().
func (b *Builder) newNode(op string, parent *node, cfg opConfig) *node {
	n := &node{b: b, id: len(b.nodes), op: op, parent: parent}
	if cfg.named {
		n.name = cfg.name
		b.checkName(op, "the name given with Named", cfg.name)
	} else {
		n.name = strings.ToLower(op) + "-" + strconv.Itoa(b.seq)
		n.generated = true
	}
	b.seq++
	b.nodes = append(b.nodes, n)
	if b.built {
		b.fail(ErrBuilt, "%s called after Build; build a new topology with a new Builder", n.label())
		return n
	}
	if parent != nil {
		parent.children = append(parent.children, n)
	}
	return n
}

// newBranchNode adds an operator whose name derives from another's (a
// branch of Split): it takes no generated-name position, so adding it does
// not shift the generated names of later operators.
func (b *Builder) newBranchNode(op string, parent *node, name string, named bool) *node {
	n := &node{b: b, id: len(b.nodes), op: op, parent: parent, name: name}
	if named {
		b.checkName(op, "the branch name", name)
	} else {
		n.generated = parent.generated
	}
	b.nodes = append(b.nodes, n)
	if b.built {
		b.fail(ErrBuilt, "%s called after Build; build a new topology with a new Builder", n.label())
		return n
	}
	parent.children = append(parent.children, n)
	return n
}

// link makes other a further input of n (Merge, joins).
func (b *Builder) link(n, other *node) {
	n.others = append(n.others, other)
	if !b.built {
		other.children = append(other.children, n)
	}
}

// useStore records that n reads or writes st.
func (b *Builder) useStore(n *node, st *storeDecl) {
	if slices.Contains(n.stores, st) {
		return
	}
	n.stores = append(n.stores, st)
	if b.wireable() {
		st.users = append(st.users, n)
	}
}

// wireable reports whether closures may still be attached: not after a
// successful Build (see the INVARIANT on node).
func (b *Builder) wireable() bool { return !b.built }

// checkName records an error if name cannot become part of a topic name.
// what says where the name came from ("Named", "topic", "store name").
func (b *Builder) checkName(op, what, name string) bool {
	if name == "" {
		b.fail(ErrEmptyName, "%s: %s is empty; give a non-empty name", op, what)
		return false
	}
	if err := validName(name); err != "" {
		b.fail(ErrInvalidName, "%s: %s %q %s", op, what, name, err)
		return false
	}
	return true
}

// validName returns why name cannot be (part of) a Kafka topic name, or "".
func validName(name string) string {
	if name == "." || name == ".." {
		return `is not a legal topic name ("." and ".." are reserved)`
	}
	if len(name) > 249 {
		return "is longer than Kafka's limit of 249 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Sprintf("contains %q; use only ASCII letters, digits, '.', '_' and '-'", rune(c))
		}
	}
	return ""
}

// checkCodec records an error if a codec is nil. which is e.g. "key codec".
func checkCodec(n *node, which string, isNil bool) {
	if isNil {
		n.b.fail(ErrNilCodec, "%s: %s is nil; pass one, e.g. codec.String{}", n.label(), which)
	}
}

// checkFunc records an error if a function is nil.
func checkFunc(n *node, which string, isNil bool) {
	if isNil {
		n.b.fail(ErrNilFunc, "%s: %s is nil", n.label(), which)
	}
}
