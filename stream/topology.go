package stream

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
)

// Topology is a validated, immutable topology, split into stages. It is safe
// for concurrent use. Run it with processor.New, test it with streamtest.New.
type Topology struct {
	// rt is the runtime's view (internal/topology): its stages' topics,
	// stores and compiled programs, for processor and streamtest only.
	rt
	stages []*Stage
	desc   string
	dot    string
}

// rt is embedded in Topology under an unexported name: topology.Of reaches
// the view through it, and nothing else can.
type rt = topology.Handle

// Stage is a sub-topology: the operators connected to each other without
// crossing a repartition topic (operators that share a store are connected
// too). The runtime runs a stage as one consumer group, <app>-<stage name>,
// with one task per input partition; processor.ForStage configures one
// stage by its name.
//
// A stage with several inputs needs them co-partitioned (the same number of
// partitions, keyed alike); checking that needs partition counts, so the
// runtime does it.
type Stage struct {
	// Name is the name of the stage's first source: the Source's name, or
	// the name of the GroupBy (GroupByKey) whose repartition topic it reads.
	Name string
	// GeneratedName reports that Name was generated (no Named was given):
	// renaming it later loses the stage's committed offsets.
	GeneratedName bool

	// What the runtime sees (internal/topology.Stage has their docs).
	inputs    []topology.TopicRef
	outputs   []topology.TopicRef
	stores    []topology.StoreSpec
	timeStore string // "<stage>-stream-time", or "" when the stage keeps no stream time

	nodes   []*node // in id order
	sources []*node // nodes with an input topic, in id order
}

// view returns the runtime's view of s.
func (s *Stage) view() *topology.Stage {
	return &topology.Stage{
		Name: s.Name, GeneratedName: s.GeneratedName,
		Inputs: s.inputs, Outputs: s.outputs, Stores: s.stores, TimeStore: s.timeStore,
		Program: s.compileProgram, Punctuator: s.compilePunctuator,
	}
}

// Stages returns the stages in topological order: a stage comes after every
// stage that writes a topic it reads. The slice is a copy; the Stages are
// shared and must not be modified.
func (t *Topology) Stages() []*Stage { return slices.Clone(t.stages) }

// String returns the topology's description: its stages with their topics,
// stores and operators, followed by a warning for every generated name that
// the runtime turns into offsets or state.
func (t *Topology) String() string { return t.desc }

// Validate checks what depends on the application id app: that app is a
// legal name, that the physical names of internal topics and changelogs fit
// Kafka's 249-character limit, and that no user topic has the physical name
// of an internal topic or changelog. Errors wrap ErrEmptyName,
// ErrInvalidName or ErrNameClash, joined with errors.Join.
func (t *Topology) Validate(app string) error {
	if app == "" {
		return errorf(ErrEmptyName, "the application id is empty")
	}
	if why := validName(app); why != "" {
		return errorf(ErrInvalidName, "application id %q %s", app, why)
	}
	var errs []error
	internal := map[string]string{} // physical name -> what it is
	user := map[string]bool{}
	for _, s := range t.stages {
		for _, r := range slices.Concat(s.inputs, s.outputs) {
			if r.Internal {
				internal[r.TopicName(app)] = fmt.Sprintf("the internal topic %q", r.Name)
			} else {
				user[r.Name] = true
			}
		}
		for _, st := range s.stores {
			internal[topology.ChangelogTopic(app, st.Name)] = fmt.Sprintf("the changelog of store %q", st.Name)
		}
	}
	for _, name := range sortedKeys(internal) {
		if len(name) > 249 {
			errs = append(errs, errorf(ErrInvalidName, "topic %q, %s for application %q, is longer than Kafka's limit of 249 characters; use shorter names",
				name, internal[name], app))
		}
		if user[name] {
			errs = append(errs, errorf(ErrNameClash, "user topic %q is also %s for application %q; rename the topic, the application or the operator",
				name, internal[name], app))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compileProgram compiles the stage for application id app: see
// topology.Stage.Program for the contract.
func (s *Stage) compileProgram(app string) exec.Program {
	p := s.compile(app)
	type input struct {
		topic string
		entry func(h *Handle, r *exec.Record) error
	}
	inputs := make([]input, len(s.sources))
	names := make([]string, len(s.sources))
	for i, n := range s.sources {
		inputs[i] = input{topic: n.in.ref().TopicName(app), entry: n.entry}
		names[i] = quote(inputs[i].topic)
	}
	return func(t exec.Task, r *exec.Record) error {
		for i := range inputs {
			if inputs[i].topic == r.Topic {
				h, sc := p.handle(t, r)
				// Deferred: a user function that panics (the runtime
				// recovers it) must not leave a Handle it kept working.
				defer p.done(h, sc)
				h.tm.input = millis(r.Timestamp)
				err := inputs[i].entry(h, r)
				if err == nil && s.timeStore != "" {
					// After the record's operators: the record moved
					// stream time (its own windows saw it already).
					err = p.advanceTime(h, h.tm.input)
				}
				if err == nil {
					h.reportDrops()
				}
				return err
			}
		}
		return fmt.Errorf("stream: stage %q got a record of topic %q, which it does not read (it reads %s)",
			s.Name, r.Topic, strings.Join(names, ", "))
	}
}

// compile prepares what the stage's Program and Punctuator share.
func (s *Stage) compile(app string) *program {
	p := &program{stage: s, app: app, internal: map[*topicRef]string{}, reuseHandle: true}
	for _, n := range s.nodes {
		if n.handsHandle {
			p.reuseHandle = false
		}
		for _, t := range n.out {
			if t.internal {
				p.internal[t] = t.ref().TopicName(app)
			}
		}
	}
	p.compileTimers()
	return p
}

// Build validates the topology and splits it into stages. It reports every
// problem it finds (and every mistake recorded by the DSL calls before it),
// joined with errors.Join; each wraps one of the package's sentinel errors.
//
// After a successful Build the Builder is frozen: later DSL calls change
// nothing, and a second Build returns ErrBuilt.
func (b *Builder) Build() (*Topology, error) {
	if b.built {
		return nil, errors.Join(append([]error{errorf(ErrBuilt, "Build called twice; use a new Builder for a new topology")}, b.errs...)...)
	}
	errs := slices.Clone(b.errs)
	hasSource := slices.ContainsFunc(b.nodes, func(n *node) bool { return n.in != nil && !n.derived })
	if !hasSource {
		errs = append(errs, errorf(ErrNoSource, "the topology reads no topic; add a stream.Source"))
	}
	errs = append(errs, b.checkNames()...)
	stages := b.splitStages()
	errs = append(errs, checkStageNames(stages)...)
	errs = append(errs, b.checkTimeStores(stages)...)
	errs = append(errs, checkCoPartitioned(stages)...)
	errs = append(errs, b.checkGlobals()...)
	order, err := orderStages(stages)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	view := &topology.Topology{Globals: b.globalSpecs()}
	for _, s := range order {
		view.Stages = append(view.Stages, s.view())
	}
	t := &Topology{rt: topology.NewHandle(view), stages: order}
	t.desc = describe(b, order)
	t.dot = dot(order)
	b.built = true
	return t, nil
}

// checkNames reports name clashes among operators, stores and topics.
func (b *Builder) checkNames() []error {
	var errs []error
	ops := map[string]*node{}
	for _, n := range b.nodes {
		if n.derived {
			continue
		}
		if o, ok := ops[n.name]; ok {
			switch {
			case o.generated:
				errs = append(errs, errorf(ErrNameClash, "Named(%q) on %s clashes with the name generated for %s; choose another name",
					n.name, n.op, o.op))
			case n.generated:
				errs = append(errs, errorf(ErrNameClash, "Named(%q) on %s clashes with the name generated for %s; choose another name",
					n.name, o.op, n.op))
			default:
				errs = append(errs, errorf(ErrNameClash, "%s and %s are both named %q; give one of them another name with Named",
					o.op, n.op, n.name))
			}
			continue
		}
		ops[n.name] = n
	}

	stores := map[string]*storeDecl{}
	internal := map[string]string{} // logical name of an internal topic -> whose
	for _, st := range b.stores {
		if o, ok := stores[st.name]; ok {
			errs = append(errs, errorf(ErrNameClash, "store %q is declared twice, by %s and by %s; give one of them another name",
				st.name, o.by, st.by))
			continue
		}
		stores[st.name] = st
		internal[st.name+"-changelog"] = "the changelog of store " + quote(st.name)
	}

	readers := map[string]*node{}
	for _, n := range b.nodes {
		if n.in == nil {
			continue
		}
		if n.in.internal {
			what := "the repartition topic of "
			by := n
			if n.writer != nil {
				by = n.writer
			}
			if n.in.loop {
				what = "the loop topic of "
			}
			if o, ok := internal[n.in.name]; ok {
				errs = append(errs, errorf(ErrNameClash, "%s %q of %s is also %s; rename one of them",
					strings.TrimSuffix(strings.TrimPrefix(what, "the "), " of "), n.in.name, by.label(), o))
			}
			internal[n.in.name] = what + by.label()
			continue
		}
		if o, ok := readers[n.in.name]; ok {
			errs = append(errs, errorf(ErrNameClash, "topic %q is read by %s and by %s; read it with one Source and use the stream twice",
				n.in.name, o.label(), n.label()))
			continue
		}
		readers[n.in.name] = n
	}
	// A user topic named like an internal topic: its physical name differs
	// (internal topics get the application id as a prefix), but reading or
	// writing it is almost certainly a mistake.
	for _, n := range b.nodes {
		for _, t := range append([]*topicRef{n.in}, n.out...) {
			if t == nil || t.internal {
				continue
			}
			if o, ok := internal[t.name]; ok {
				errs = append(errs, errorf(ErrNameClash, "%s uses topic %q, which is the name of %s (an internal topic); use another topic",
					n.label(), t.name, o))
			}
		}
	}
	return errs
}

// splitStages groups the nodes into stages: nodes joined by a stream or by a
// shared store belong to one stage. Stages come in the order of their first
// node.
func (b *Builder) splitStages() []*Stage {
	parent := make([]int, len(b.nodes))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	union := func(a, b int) {
		ra, rb := find(a), find(b)
		if ra < rb {
			parent[rb] = ra
		} else {
			parent[ra] = rb
		}
	}
	for _, n := range b.nodes {
		if n.parent != nil {
			union(n.id, n.parent.id)
		}
		for _, o := range n.others {
			union(n.id, o.id)
		}
		for _, o := range n.sameStage {
			union(n.id, o.id)
		}
	}
	for _, st := range b.stores {
		for _, u := range st.users[min(1, len(st.users)):] {
			union(st.users[0].id, u.id)
		}
	}

	byRoot := map[int]*Stage{}
	var stages []*Stage
	for _, n := range b.nodes {
		root := find(n.id)
		s := byRoot[root]
		if s == nil {
			s = &Stage{}
			byRoot[root] = s
			stages = append(stages, s)
		}
		s.nodes = append(s.nodes, n)
	}
	for _, s := range stages {
		seenOut := map[topology.TopicRef]bool{}
		seenStore := map[*storeDecl]bool{}
		for _, n := range s.nodes {
			if n.in != nil {
				if len(s.sources) == 0 {
					s.Name, s.GeneratedName = n.name, n.generated
				}
				s.sources = append(s.sources, n)
				s.inputs = append(s.inputs, n.in.ref())
			}
			for _, t := range n.out {
				if r := t.ref(); !seenOut[r] {
					seenOut[r] = true
					s.outputs = append(s.outputs, r)
				}
			}
			for _, st := range n.stores {
				if !seenStore[st] {
					seenStore[st] = true
					s.stores = append(s.stores, topology.StoreSpec{Name: st.name, GeneratedName: st.generated})
				}
			}
		}
		if slices.ContainsFunc(s.nodes, func(n *node) bool { return n.usesTime }) && len(s.sources) > 0 {
			s.timeStore = s.Name + timeStoreSuffix
			s.stores = append(s.stores, topology.StoreSpec{Name: s.timeStore, GeneratedName: s.GeneratedName, Internal: true})
		}
	}
	// A group without a source can only come from operators on a stream
	// that has none, which the DSL does not allow; drop it defensively.
	return slices.DeleteFunc(stages, func(s *Stage) bool { return len(s.sources) == 0 })
}

func checkStageNames(stages []*Stage) []error {
	var errs []error
	seen := map[string]bool{}
	for _, s := range stages {
		if seen[s.Name] {
			errs = append(errs, errorf(ErrNameClash, "two stages are named %q; rename the first Source (or GroupBy) of one of them with Named", s.Name))
		}
		seen[s.Name] = true
	}
	return errs
}

// orderStages sorts the stages so that every stage comes after the stages
// writing the topics it reads, or reports a cycle.
func orderStages(stages []*Stage) ([]*Stage, error) {
	next := stageEdges(stages)
	if cycle := findCycle(next); cycle != nil {
		return nil, cycleError(stages, cycle)
	}
	// Kahn's algorithm, taking the earliest-declared ready stage first.
	indeg := make([]int, len(stages))
	for _, es := range next {
		for _, e := range es {
			indeg[e.to]++
		}
	}
	var order []*Stage
	done := make([]bool, len(stages))
	for progress := true; progress && len(order) < len(stages); {
		progress = false
		for i, s := range stages {
			if !done[i] && indeg[i] == 0 {
				done[i] = true
				order = append(order, s)
				for _, e := range next[i] {
					indeg[e.to]--
				}
				progress = true
				break
			}
		}
	}
	return order, nil
}

// stageEdge says that a stage feeds stage to through topic.
type stageEdge struct {
	to    int
	topic topology.TopicRef
}

// stageEdges returns, for every stage i, the stages it feeds (next[i]),
// leaving out a declared loop's edge from its stage to itself.
func stageEdges(stages []*Stage) (next [][]stageEdge) {
	readers := map[topology.TopicRef][]int{}
	for i, s := range stages {
		for _, r := range s.inputs {
			readers[r] = append(readers[r], i)
		}
	}
	next = make([][]stageEdge, len(stages))
	for i, s := range stages {
		loops := s.loops()
		for _, w := range s.outputs {
			for _, j := range readers[w] {
				if j == i && loops[w] {
					continue // a declared loop: the stage reads what it writes on purpose
				}
				next[i] = append(next[i], stageEdge{j, w})
			}
		}
	}
	return next
}

// hop is a step of a cycle: stage from writes topic, which the next hop's
// stage reads.
type hop struct {
	from  int
	topic topology.TopicRef
}

// findCycle returns a cycle of the stage graph next, as its hops, or nil.
func findCycle(next [][]stageEdge) []hop {
	const (
		white = iota // not visited
		grey         // on the DFS path
		black        // done, on no cycle
	)
	color := make([]int, len(next))
	var path, cycle []hop
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		for _, e := range next[i] {
			path = append(path, hop{i, e.topic})
			switch color[e.to] {
			case grey:
				k := slices.IndexFunc(path, func(h hop) bool { return h.from == e.to })
				cycle = path[k:]
				return true
			case white:
				if visit(e.to) {
					return true
				}
			}
			path = path[:len(path)-1]
		}
		color[i] = black
		return false
	}
	for i := range next {
		if color[i] == white && visit(i) {
			return cycle
		}
	}
	return nil
}

// cycleError reports cycle with its path, what may have joined its stages,
// and what to change.
func cycleError(stages []*Stage, cycle []hop) error {
	var b strings.Builder
	shared, looped := false, false
	for k, h := range cycle {
		from, to := stages[h.from], stages[cycle[(k+1)%len(cycle)].from]
		if k > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "stage %q writes %s (%s), which stage %q reads", from.Name, describeRef(h.topic),
			writerOf(from, h.topic), to.Name)
		shared = shared || sharesStore(from)
		looped = looped || writesLoop(from)
	}
	hint := ""
	if shared {
		hint = " (operators that share a store run in one stage)"
	}
	if looped {
		hint += " (a loop's writers run in the loop's stage)"
	}
	fix := "write to another topic"
	if len(cycle) == 1 && !cycle[0].topic.Internal {
		fix += ", or declare a loop with stream.DeclareLoop if the stage is meant to read its own output"
	}
	return errorf(ErrCycle, "%s: a stage must not consume its own output, directly or through other stages%s; %s",
		b.String(), hint, fix)
}

// loops returns the declared loop topics the stage reads.
func (s *Stage) loops() map[topology.TopicRef]bool {
	m := map[topology.TopicRef]bool{}
	for _, n := range s.sources {
		if n.in.loop {
			m[n.in.ref()] = true
		}
	}
	return m
}

// checkCoPartitioned reports the stages that read internal topics given
// different partition counts (Partitions): such inputs cannot be
// co-partitioned. Counts of user topics, and inherited ones, are the
// runtime's to check.
func checkCoPartitioned(stages []*Stage) []error {
	var errs []error
	for _, s := range stages {
		var first topology.TopicRef
		for _, r := range s.inputs {
			if r.Partitions == 0 {
				continue
			}
			if first.Partitions == 0 {
				first = r
			} else if r.Partitions != first.Partitions {
				errs = append(errs, errorf(ErrNotCoPartitioned, "stage %q reads topics that are not co-partitioned: %s has %d partitions, %s has %d; give them the same Partitions",
					s.Name, describeRef(first), first.Partitions, describeRef(r), r.Partitions))
			}
		}
	}
	return errs
}

// sharesStore reports whether a store of s is used by several operators,
// which may be what joined the stage into a cycle.
func sharesStore(s *Stage) bool {
	for _, n := range s.nodes {
		for _, st := range n.stores {
			if len(st.users) > 1 {
				return true
			}
		}
	}
	return false
}

// writesLoop reports whether an operator of s writes a loop, which put it in
// the loop's stage.
func writesLoop(s *Stage) bool {
	for _, n := range s.nodes {
		if len(n.sameStage) > 0 {
			return true
		}
	}
	return false
}

// writerOf names the operators of s that write topic r.
func writerOf(s *Stage, r topology.TopicRef) string {
	var labels []string
	for _, n := range s.nodes {
		for _, t := range n.out {
			if t.ref() == r {
				labels = append(labels, n.label())
				break
			}
		}
	}
	return strings.Join(labels, ", ")
}

func describeRef(r topology.TopicRef) string {
	if r.Internal && strings.HasSuffix(r.Name, loopSuffix) {
		return fmt.Sprintf("loop topic %q", r.Name)
	}
	if r.Internal {
		return fmt.Sprintf("repartition topic %q", r.Name)
	}
	return fmt.Sprintf("topic %q", r.Name)
}
