package topology

import "github.com/sluicehq/sluice/internal/exec"

// Topology is the runtime's view of a stream.Topology.
type Topology struct {
	// Stages are the stages in topological order: a stage comes after
	// every stage that writes a topic it reads.
	Stages []*Stage
	// Globals are the global tables, in declaration order.
	Globals []Global
}

// Of returns the runtime's view of t, a *stream.Topology (not nil).
func Of(t interface{ view() *Topology }) *Topology { return t.view() }

// Handle carries a Topology to Of. stream.Topology embeds it under an
// unexported name, so the view is reachable through Of and nowhere else:
// Handle has no exported field or method.
type Handle struct{ t *Topology }

// NewHandle returns the Handle of t, for package stream.
func NewHandle(t *Topology) Handle { return Handle{t} }

func (h Handle) view() *Topology { return h.t }

// Stage is a sub-topology: the operators connected to each other without
// crossing a repartition topic (see stream.Stage). The runtime runs a stage
// as one consumer group, with one task per input partition.
type Stage struct {
	// Name is the stage's name (stream.Stage.Name); GeneratedName
	// reports that it was generated.
	Name          string
	GeneratedName bool
	// Inputs are the topics the stage consumes, in declaration order.
	Inputs []TopicRef
	// Outputs are the topics the stage emits to: sink topics, declared
	// outputs and repartition and loop topics, in declaration order,
	// without duplicates.
	Outputs []TopicRef
	// Stores are the stage's state stores, in declaration order. Each has
	// a changelog topic, ChangelogTopic(app, Name).
	Stores []StoreSpec
	// TimeStore is the name of the store, among Stores, that keeps each
	// task's stream time, or "" when the stage needs none (it has no
	// windows, suppression, stream-stream joins or stream-time timers).
	// It is "<stage>-stream-time".
	TimeStore string

	// Program compiles the stage for application id app.
	//
	// The Program decodes a record of whichever input topic it came from
	// (r.Topic is the physical topic name), runs the stage's operators,
	// reads and writes the stage's stores through t.Store (by logical
	// store name) and emits through t.Emit with physical topic names and
	// exec.AnyPartition. Outputs carry the input record's timestamp and
	// its headers, unless an operator upstream set others
	// (stream.WithHeaders). Table deletions written with stream.TableTo
	// are outputs with a nil Value (tombstones).
	//
	// It returns a *stream.CodecError (matching codec.ErrDecode for decode
	// failures) for a key or value that does not decode or encode, the
	// error of a Process function wrapped with the processor's name, and
	// the runtime's own errors from t unchanged. The outputs of the
	// stream-time hooks the record runs (a released window, an unpaired
	// join result, a stream-time timer's call) are judged on their own
	// when t implements exec.Drops and exec.Savepoints (an exec.Scope
	// does): one found late downstream is dropped and reported with
	// DropLate once the call succeeded; one that fails is discarded and
	// handed to DropFailed as a *stream.HookError, and fails the record
	// only if DropFailed returns an error. A panic in a user function is
	// not recovered: the caller recovers it (as a *stream.PanicError).
	// Either way the record's effects may be partly made: the runtime must
	// discard every store write and emit of a record whose call did not
	// return nil (see the exactly-once contract in package stream's
	// documentation).
	//
	// The Program keeps no state between calls: it is safe to call
	// concurrently from several goroutines (one per task), as long as the
	// user's functions are.
	Program func(app string) exec.Program

	// Punctuator compiles the stage's time-driven side for application id
	// app (see exec.Punctuator), or returns nil when the stage has
	// neither stream time (windows, suppression, stream-stream joins,
	// stream-time timers) nor wall-clock timers. Like the Program it keeps
	// no state between calls and is safe for concurrent use by different
	// tasks; a panic is the caller's to recover.
	Punctuator func(app string) *exec.Punctuator
}

// TopicRef names a topic a stage reads or writes.
type TopicRef struct {
	// Name is the logical name. For a user topic it is the topic's name;
	// for an internal topic the physical name is app + "-" + Name (see
	// TopicName).
	Name string
	// Internal reports a repartition or loop topic, created and owned by
	// the application.
	Internal bool
	// Partitions is the partition count an internal topic was given with
	// stream.Partitions, or 0: then it inherits the partition count of the
	// stage that writes it (see PlanPartitions). Always 0 for user topics,
	// whose partition counts only the cluster knows.
	Partitions int
}

// TopicName returns the physical topic name for application id app.
func (r TopicRef) TopicName(app string) string {
	if r.Internal {
		return app + "-" + r.Name
	}
	return r.Name
}

// StoreSpec describes a state store of a stage.
type StoreSpec struct {
	// Name is the store's logical name, as exec.Task.Store receives it.
	Name string
	// GeneratedName reports that Name was generated (no stream.Named was
	// given): renaming it later loses the store's state.
	GeneratedName bool
	// Internal reports a store the stage keeps for itself (its stream
	// time), named after the stage.
	Internal bool
}

// ChangelogTopic returns the name of store's changelog topic for application
// id app: app + "-" + store + "-changelog".
func ChangelogTopic(app, store string) string { return app + "-" + store + "-changelog" }

// Global describes a global table of a topology (stream.SourceGlobalTable).
type Global struct {
	// Name is the table's name (see stream.Named). Programs look the table
	// up by it (exec.GlobalTask), and the runtime keys its local copy by
	// it: renaming a global table makes every instance read its topic
	// again.
	Name string
	// GeneratedName reports that Name was generated (no Named was given).
	GeneratedName bool
	// Topic is the topic the table copies, a user topic.
	Topic string
}
