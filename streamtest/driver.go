package streamtest

import (
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// Opt configures a Driver, as processor.Opt configures a Processor: each
// option is a value named after the setting it sets.
type Opt interface{ apply(*config) }

// Option is the old name of Opt.
//
// Deprecated: use Opt.
type Option = Opt

type config struct {
	app             string
	partitions      int
	topicPartitions map[string]int
	start           time.Time
	maxRecordBytes  int
	maxDeliveries   int
}

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

// ApplicationID sets the application id, which prefixes the physical names
// of internal topics ("<app>-<name>-repartition"). Default "streamtest".
func ApplicationID(app string) Opt { return optFunc(func(c *config) { c.app = app }) }

// Partitions sets the partition count of every user topic that
// TopicPartitions does not name. Default 1. Internal topics get theirs as
// the runtime gives them: stream.Partitions, or the partition count of the
// writing stage's input.
func Partitions(n int) Opt { return optFunc(func(c *config) { c.partitions = n }) }

// TopicPartitions sets the partition count of the user topic named topic.
func TopicPartitions(topic string, n int) Opt {
	return optFunc(func(c *config) {
		if c.topicPartitions == nil {
			c.topicPartitions = map[string]int{}
		}
		c.topicPartitions[topic] = n
	})
}

// StartTime sets the driver's wall clock at the start, which is the
// timestamp of records piped without one. Default 2000-01-01T00:00:00Z.
func StartTime(t time.Time) Opt { return optFunc(func(c *config) { c.start = t }) }

// MaxRecordBytes is the runtime's processor.MaxRecordBytes: an output or
// state change above it fails its record (exec.ErrRecordTooLarge). Default
// 1,000,012, as in the runtime.
func MaxRecordBytes(n int) Opt { return optFunc(func(c *config) { c.maxRecordBytes = n }) }

// MaxDeliveries bounds how many records one Pipe may process, counting the
// records its outputs feed back into the topology (repartition and loop
// topics); beyond it Pipe fails, to stop a loop that never ends. Default
// 100,000.
func MaxDeliveries(n int) Opt { return optFunc(func(c *config) { c.maxDeliveries = n }) }

// T is what the driver needs of a test: *testing.T and *testing.B are Ts.
// The driver calls Fatalf when a typed helper fails (and then returns, should
// Fatalf return).
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

var _ T = testing.TB(nil)

// Driver runs a topology synchronously in memory. Create one with New. A
// Driver is not safe for concurrent use.
type Driver struct {
	tb     T
	cfg    config
	now    time.Time
	topics map[string]*topic
	stages []*stage
	scope  exec.Scope
	// seq counts appended records: a record's place in the driver-wide
	// append order, which breaks timestamp ties (see cycle).
	seq uint64
	// held counts the open Batch calls: while positive, piped records
	// wait.
	held int
	// uncommitted are the records appended by the stage cycle (or timer
	// firing) running now; commit makes them visible.
	uncommitted []recordRef
	// globals are the topology's global tables, by name (see global.go).
	globals map[string]*globalTable
}

// recordRef names a record of a topic.
type recordRef struct {
	t   *topic
	msg int // index in t.msgs
}

// topic is an in-memory topic: its records in append order.
type topic struct {
	name       string
	internal   bool
	partitions int
	readers    []*stage
	writers    []*stage
	globals    []*globalTable // global tables that copy the topic
	msgs       []Message
	seqs       []uint64 // seqs[i] is msgs[i]'s place in the append order
	next       []int64  // next offset per partition
	// parts holds, per partition, the indexes in msgs of its records in
	// offset order; visible[p] of them are committed, readable by stages.
	//
	// INVARIANT: the records of parts[p] past visible[p] are the ones of
	// partition p in Driver.uncommitted, so commit makes them visible by
	// counting.
	parts   [][]int
	visible []int
}

type stage struct {
	spec   *topology.Stage
	prog   exec.Program
	stores map[string]bool
	tasks  map[int32]*task
	d      *Driver // for its global tables
	// inputs are the topics the stage reads.
	inputs []*topic
	// punct is the stage's time-driven side (nil: none); partitions its
	// task count, for firing timers in every task.
	punct      *exec.Punctuator
	partitions int
}

// task is one partition of a stage: its committed stores, and how far it
// has read each input topic. It is the exec.Base that records' effects are
// staged over, as the runtime's task is.
type task struct {
	st     *stage
	p      int32
	stores map[string]map[string][]byte
	pos    map[*topic]int // records of partition p read, per input topic
	memo   map[any]any    // exec.MemoryTask
}

// Memory implements exec.MemoryTask: the driver's tasks live as long as the
// driver, as a processor's live until a restart.
func (t *task) Memory() map[any]any {
	if t.memo == nil {
		t.memo = map[any]any{}
	}
	return t.memo
}

var _ exec.Base = (*task)(nil)

func (t *task) Partition() int32 { return t.p }

func (t *task) HasStore(name string) bool { return t.st.stores[name] }

func (t *task) Get(store string, key []byte) ([]byte, bool, error) {
	v, ok := t.stores[store][string(key)]
	return v, ok, nil
}

func (t *task) Scan(store string, lower, upper []byte, fn func(key, value []byte) error) error {
	m := t.stores[store]
	keys := make([]string, 0, len(m))
	for k := range m {
		if k >= string(lower) && (upper == nil || k < string(upper)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), m[k]); err != nil {
			return err
		}
	}
	return nil
}

func (st *stage) task(p int32) *task {
	t := st.tasks[p]
	if t == nil {
		t = &task{st: st, p: p, stores: map[string]map[string][]byte{}, pos: map[*topic]int{}}
		for name := range st.stores {
			t.stores[name] = map[string][]byte{}
		}
		st.tasks[p] = t
	}
	return t
}

// New returns a Driver running topo. It checks the topology as the runtime
// does when it starts (the application id, partition counts of co-partitioned
// inputs) and fails the test on a problem; Validate returns the problems
// instead.
func New(tb T, topo *stream.Topology, opts ...Opt) *Driver {
	tb.Helper()
	d, err := open(topo, opts)
	if err != nil {
		tb.Fatalf("streamtest.New: %v", err)
		return nil
	}
	d.tb = tb
	return d
}

// Validate checks topo as New does and returns what is wrong, such as
// inputs of one stage that are not co-partitioned.
func Validate(topo *stream.Topology, opts ...Opt) error {
	_, err := open(topo, opts)
	return err
}

func open(topo *stream.Topology, opts []Opt) (*Driver, error) {
	if topo == nil {
		return nil, errors.New("nil topology")
	}
	cfg := config{
		app:            "streamtest",
		partitions:     1,
		start:          time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		maxRecordBytes: 1000012,
		maxDeliveries:  100000,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.partitions < 1 {
		return nil, fmt.Errorf("Partitions(%d): a topic needs at least 1 partition", cfg.partitions)
	}
	for t, n := range cfg.topicPartitions {
		if n < 1 {
			return nil, fmt.Errorf("TopicPartitions(%q, %d): a topic needs at least 1 partition", t, n)
		}
	}
	if err := topo.Validate(cfg.app); err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, now: cfg.start, topics: map[string]*topic{}}
	userCount := func(name string) int {
		if n, ok := cfg.topicPartitions[name]; ok {
			return n
		}
		return cfg.partitions
	}
	// Partition counts as the runtime gives them: the topology's partition
	// plan, with every user topic existing.
	view := topology.Of(topo)
	plan, err := view.PlanPartitions(cfg.app, func(topic string) (int, bool) { return userCount(topic), true })
	if err != nil {
		return nil, err
	}
	get := func(r topology.TopicRef) *topic {
		name := r.TopicName(cfg.app)
		t := d.topics[name]
		if t == nil {
			t = &topic{name: name, internal: r.Internal, partitions: userCount(name)}
			if r.Internal {
				t.partitions = plan.Internal[name]
			}
			d.topics[name] = t
		}
		return t
	}

	for i, spec := range view.Stages {
		st := &stage{spec: spec, prog: spec.Program(cfg.app), stores: map[string]bool{}, tasks: map[int32]*task{}, d: d,
			punct: spec.Punctuator(cfg.app), partitions: plan.Stages[i]}
		for _, s := range spec.Stores {
			st.stores[s.Name] = true
		}
		d.stages = append(d.stages, st)
		for _, r := range spec.Inputs {
			t := get(r)
			t.readers = append(t.readers, st)
			st.inputs = append(st.inputs, t)
		}
		for _, r := range spec.Outputs {
			t := get(r)
			t.writers = append(t.writers, st)
		}
	}
	d.openGlobals(view, get)
	for _, t := range d.topics {
		t.next = make([]int64, t.partitions)
		t.parts = make([][]int, t.partitions)
		t.visible = make([]int, t.partitions)
	}
	return d, nil
}

// Message is a record of a topic, as bytes.
type Message struct {
	Key []byte
	// Value is the record's value; nil is a null value (a tombstone).
	Value     []byte
	Headers   []stream.Header
	Timestamp time.Time
	// Partition and Offset say where the record is in its topic. Pipe
	// ignores them: it picks the partition by hashing the key (see
	// Partition) and appends.
	Partition int32
	Offset    int64
}

// Now returns the driver's wall clock: the timestamp of records piped
// without one.
func (d *Driver) Now() time.Time { return d.now }

// AdvanceWallClock moves the driver's wall clock forward by dt and fires
// the wall-clock timers (stream.Every with stream.WallClock) due in the
// meantime, in every task of every stage, stage by stage and task by task,
// each task's timers through the same effect staging as a record (the
// runtime fires them once per cycle). The records they emit are processed
// before it returns. A timer's error fails the test with a
// *stream.TimerError, as the runtime's Fail policy stops the stage with one;
// its task's effects of that call are discarded.
func (d *Driver) AdvanceWallClock(dt time.Duration) {
	d.tb.Helper()
	if dt < 0 {
		d.fatalf("AdvanceWallClock(%v): the wall clock does not go back", dt)
		return
	}
	prev := d.now
	d.now = d.now.Add(dt)
	if err := d.punctuate(exec.WallClock, prev, d.now); err != nil {
		d.fatalf("AdvanceWallClock(%v): %v", dt, err)
	}
}

// PipeMessage appends m to topic (a physical topic name; internal topics are
// "<app>-<name>-repartition") in the partition of its key, and processes it
// and everything it causes synchronously, in cycles as the runtime does
// (see the package doc, Cycles): the records its stage emits to topics the
// topology reads (repartition and loop topics, user topics read by another
// stage) are processed in the stages' next cycles, until nothing is left.
// Inside Batch it only appends: the record waits for the batch's end.
//
// A record whose processing fails (a codec error, an error or a panic of a
// user function, an output too large, a null key where one is needed)
// leaves no effect, as in the runtime: none of its store writes and outputs
// happen. The driver goes on with the other records, as the runtime's Skip
// policy would, and PipeMessage returns every failure, each a *RecordError,
// joined.
func (d *Driver) PipeMessage(topic string, m Message) error {
	t := d.topics[topic]
	if t == nil {
		return fmt.Errorf("streamtest: topic %q is not a topic of the topology (its topics: %s)", topic, d.topicNames())
	}
	if !t.read() {
		return fmt.Errorf("streamtest: topic %q is not read by the topology; pipe records into its inputs", topic)
	}
	if m.Timestamp.IsZero() {
		m.Timestamp = d.now
	}
	d.append(t, m, Partition(m.Key, t.partitions))
	d.commit() // a piped record is committed by its producer
	if d.held > 0 {
		return nil
	}
	return d.run()
}

// Batch runs fn, which pipes records (Pipe, Send, PipeMessage, on any
// inputs), and then processes them together, as the runtime processes the
// records it finds waiting when it polls: each stage's first cycle takes
// all of them, task by task, lowest timestamp first (see the package doc,
// Cycles), and what they cause follows in later cycles. Outside Batch, each
// piped record is processed, with all it causes, before the next is piped,
// as if the runtime had committed one record's cycles before the next
// record arrived. Use Batch to test records that reach the runtime
// together (a backlog, a restart, a burst): there a record of one input may
// be processed before an earlier-piped record of another input with a later
// timestamp, a loop record after records piped later than its cause, and a
// repartitioned stream arrives in whole batches per upstream task, so stream
// time may jump and a record the one-by-one order accepts may be late.
//
// Batch returns every failure of the records processed, each a
// *RecordError, joined; the Send calls inside fn return only encoding
// errors. Batches nest: records wait for the outermost one. Reading outputs
// or stores inside fn sees the state before the batch; AdvanceWallClock and
// AdvanceStreamTime inside fn process the records piped so far first.
func (d *Driver) Batch(fn func()) error {
	d.held++
	defer func() { d.held-- }()
	fn()
	if d.held > 1 {
		return nil
	}
	return d.run()
}

// append adds m to partition p of t, uncommitted: readers see it after the
// next commit.
func (d *Driver) append(t *topic, m Message, p int32) {
	m.Partition, m.Offset = p, t.next[p]
	t.next[p]++
	t.msgs = append(t.msgs, m)
	d.seq++
	t.seqs = append(t.seqs, d.seq)
	t.parts[p] = append(t.parts[p], len(t.msgs)-1)
	d.uncommitted = append(d.uncommitted, recordRef{t: t, msg: len(t.msgs) - 1})
}

// commit makes the uncommitted records visible to the stages and global
// tables that read their topics, as a transaction's commit makes them
// visible to read_committed consumers.
func (d *Driver) commit() {
	for _, r := range d.uncommitted {
		m := r.t.msgs[r.msg]
		r.t.visible[m.Partition]++
		d.applyGlobals(r.t, m)
	}
	clear(d.uncommitted)
	d.uncommitted = d.uncommitted[:0]
}

// run runs cycles of every stage, upstream stages first, until no stage
// has a committed record it has not processed.
func (d *Driver) run() error {
	var errs []error
	processed := 0
	for {
		progressed := false
		for _, st := range d.stages {
			n, err := d.cycle(st, d.cfg.maxDeliveries-processed)
			processed += n
			if n > 0 {
				progressed = true
			}
			if err != nil {
				errs = append(errs, err)
			}
			if processed >= d.cfg.maxDeliveries && d.pending() {
				d.skipPending()
				errs = append(errs, fmt.Errorf("streamtest: more than %d records processed for one Pipe; a loop that never ends? (see MaxDeliveries)", d.cfg.maxDeliveries))
				return errors.Join(errs...)
			}
		}
		if !progressed {
			return errors.Join(errs...)
		}
	}
}

// cycle runs one cycle of st, as the runtime's transaction loop does: every
// task processes the committed records of its partition that it has not
// processed yet, at most limit in all, and then the cycle commits, making
// what it emitted visible. Tasks go in partition order. Within a task, the
// next record is the one with the lowest timestamp among the first
// unprocessed records of the task's input topics (each partition keeps its
// offset order); a tie goes to the record appended first. It returns how
// many records it processed and their failures, joined.
func (d *Driver) cycle(st *stage, limit int) (int, error) {
	var errs []error
	n := 0
	for p := range int32(st.partitions) {
		for n < limit {
			t, i := st.head(p)
			if t == nil {
				break
			}
			tk := st.task(p)
			tk.pos[t]++
			n++
			if err := d.process(st, tk, t, t.msgs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.commit()
	return n, errors.Join(errs...)
}

// head returns the record task p of st processes next (see cycle): its
// topic and index, or nil when the task has nothing to process.
func (st *stage) head(p int32) (*topic, int) {
	var best *topic
	bi := -1
	for _, t := range st.inputs {
		k := 0
		if tk := st.tasks[p]; tk != nil {
			k = tk.pos[t]
		}
		if k >= t.visible[p] {
			continue
		}
		i := t.parts[p][k]
		if best == nil || t.msgs[i].Timestamp.Before(best.msgs[bi].Timestamp) ||
			(t.msgs[i].Timestamp.Equal(best.msgs[bi].Timestamp) && t.seqs[i] < best.seqs[bi]) {
			best, bi = t, i
		}
	}
	return best, bi
}

// pending reports whether a stage has a committed record it has not
// processed.
func (d *Driver) pending() bool {
	for _, st := range d.stages {
		for p := range int32(st.partitions) {
			if t, _ := st.head(p); t != nil {
				return true
			}
		}
	}
	return false
}

// skipPending marks every committed record as processed, without
// processing it.
func (d *Driver) skipPending() {
	for _, st := range d.stages {
		for p := range int32(st.partitions) {
			for _, t := range st.inputs {
				if t.visible[p] > 0 {
					st.task(p).pos[t] = t.visible[p]
				}
			}
		}
	}
}

// RecordError is the error of a record the driver could not process (see
// stream.RecordError): the runtime's processor.RecordError, the same type.
// Its effects were discarded.
type RecordError = stream.RecordError

// PanicError is the cause in a RecordError or stream.TimerError when a user
// function panicked (see stream.PanicError).
type PanicError = stream.PanicError

// process runs st's Program on m and applies its effects, as the runtime's
// stage.process does: the effects are staged in an exec.Scope and applied
// only if the Program succeeded and no effect failed.
func (d *Driver) process(st *stage, tk *task, t *topic, m Message) error {
	in := exec.Record{
		Topic:     t.name,
		Partition: m.Partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Headers:   m.Headers,
		Timestamp: m.Timestamp,
	}
	sc := &d.scope
	sc.Begin(tk, d.cfg.maxRecordBytes)
	err := call(st.prog, sc, &in)
	if err == nil {
		err = sc.Err()
	}
	if err != nil {
		return &RecordError{Stage: st.spec.Name, Topic: t.name, Partition: m.Partition, Offset: m.Offset, Err: err}
	}
	return d.apply(st, tk, sc)
}

// apply applies the effects staged in sc to task tk of stage st: its store
// writes, and its outputs, appended to their topics (uncommitted until the
// cycle commits).
func (d *Driver) apply(st *stage, tk *task, sc *exec.Scope) error {
	for _, w := range sc.Writes() {
		if w.Value == nil {
			delete(tk.stores[w.Store], string(w.Key))
		} else {
			tk.stores[w.Store][string(w.Key)] = w.Value
		}
	}
	for _, o := range sc.Emits() {
		out := d.topics[o.Topic]
		if out == nil {
			// The Program emitted to a topic its stage does not
			// declare: a bug in package stream.
			return fmt.Errorf("streamtest: stage %s emitted to topic %s, which is not among its outputs", st.spec.Name, o.Topic)
		}
		p := o.Partition
		if p == exec.AnyPartition {
			p = Partition(o.Key, out.partitions)
		}
		d.append(out, Message{Key: o.Key, Value: o.Value, Headers: o.Headers, Timestamp: o.Timestamp}, p)
	}
	return nil
}

// call runs the program, turning a panic into a *PanicError, as the runtime
// does.
func call(prog exec.Program, t exec.Task, r *exec.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return prog(t, r)
}

// Messages returns every record appended to topic so far, in the order they
// were appended (which keeps each partition's order). The slice is a copy;
// the byte slices are shared and must not be modified.
func (d *Driver) Messages(topic string) []Message {
	t := d.topics[topic]
	if t == nil {
		return nil
	}
	return slices.Clone(t.msgs)
}

// PartitionCount returns the partition count of topic (a physical name), or
// 0 for a topic the topology does not use.
func (d *Driver) PartitionCount(topic string) int {
	if t := d.topics[topic]; t != nil {
		return t.partitions
	}
	return 0
}

func (d *Driver) topicNames() string {
	names := make([]string, 0, len(d.topics))
	for n := range d.topics {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

func (d *Driver) fatalf(format string, args ...any) {
	d.tb.Helper()
	d.tb.Fatalf("streamtest: "+format, args...)
}
