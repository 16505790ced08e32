package stream

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/codec"
)

// Sentinel errors. Build returns every problem it finds, joined with
// errors.Join; each one wraps exactly one of these, so callers and tests can
// tell the kinds apart with errors.Is. The messages name the offending
// operator, store or topic and say what to change.
var (
	// ErrNoSource is returned by Build when the topology reads no topic.
	ErrNoSource = errors.New("stream: topology has no source")

	// ErrCycle is returned by Build when a stage reads a topic that it
	// writes, directly or through other stages and repartition topics,
	// unless the topic is a declared loop (DeclareLoop).
	ErrCycle = errors.New("stream: topology has a cycle")

	// ErrUndeclaredStore is returned by Build for a Uses option given a
	// StoreRef that no DeclareStore returned, and at run time by Get, Put,
	// Delete, Scan, Range and ScanPrefix when the calling Process did not
	// list the store in its Uses option.
	ErrUndeclaredStore = errors.New("stream: store not declared")

	// ErrUndeclaredOutput is returned by Build for an EmitsTo option given an
	// OutputRef that no DeclareOutput returned, and at run time by Emit when
	// the calling Process did not list the output in its EmitsTo option.
	ErrUndeclaredOutput = errors.New("stream: output not declared")

	// ErrNilCodec is returned by Build when an operator was given a nil
	// codec. The message names the operator and which codec.
	ErrNilCodec = errors.New("stream: nil codec")

	// ErrNilFunc is returned by Build when an operator was given a nil
	// function.
	ErrNilFunc = errors.New("stream: nil function")

	// ErrNameClash is returned by Build when two operators, stores, stages or
	// repartition topics share a name, when a store is declared twice, when a
	// topic is read by two sources, or when a user topic has the name of an
	// internal topic. Topology.Validate returns it for clashes that only the
	// application id reveals.
	ErrNameClash = errors.New("stream: name clash")

	// ErrForeignBuilder is returned by Build when an operator combines a
	// stream, store or output of one Builder with another Builder.
	ErrForeignBuilder = errors.New("stream: mixes builders")

	// ErrEmptyName is returned by Build for Named(""), an empty topic name or
	// an empty store name.
	ErrEmptyName = errors.New("stream: empty name")

	// ErrInvalidName is returned by Build (and Topology.Validate) for a name
	// that cannot become part of a Kafka topic name: it must be at most 249
	// characters of ASCII letters, digits, '.', '_' and '-', and not "." or
	// "..".
	ErrInvalidName = errors.New("stream: invalid name")

	// ErrInvalidArgument is returned by Build for an operator given an
	// argument it cannot use: a Split without branches, a Merge of fewer
	// than two streams, Partitions below 1.
	ErrInvalidArgument = errors.New("stream: invalid argument")

	// ErrNotCoPartitioned is returned by Build when the inputs of a join
	// (or of a stage) cannot be co-partitioned by construction: the
	// stream side of a join whose key may have changed since it was read,
	// sides whose keys are encoded with different codecs, or internal
	// topics of one stage given different Partitions. Partition counts of
	// user topics are known only to the runtime, which checks them when it
	// starts (processor.ErrConfig).
	ErrNotCoPartitioned = errors.New("stream: inputs not co-partitioned")

	// ErrBuilt is returned by Build when the Builder was already built. DSL
	// calls made after a successful Build change nothing: a built topology
	// never changes under a running program.
	ErrBuilt = errors.New("stream: builder already built")
)

// kindError is an error of one of the sentinel kinds above, with its own
// message (which already says "stream: ...").
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: "stream: " + fmt.Sprintf(format, args...)}
}

// CodecError reports a key or value that a codec could not decode or encode
// while a stage's Program processed an input record. A decode failure matches
// codec.ErrDecode with errors.Is (even when a user codec did not wrap it), so
// the runtime's bad-record policy can tell bad input from other failures.
type CodecError struct {
	// Op is "decode" or "encode".
	Op string
	// Part is "key" or "value".
	Part string
	// Target is where the bytes came from or were going: a topic (`topic
	// "lines"`) or a store (`store "counts"`).
	Target string
	// Operator is the operator whose codec failed, e.g. `Source "lines"`.
	Operator string
	// Topic, Partition and Offset identify the input record being processed.
	// Topic is the physical topic name.
	Topic     string
	Partition int32
	Offset    int64
	// Err is the codec's error.
	Err error
}

// Error returns e.g. `stream: decode value of topic "lines" in Source
// "read-lines" (record lines/0@17): codec: Int64 wants 8 bytes, got 3`.
func (e *CodecError) Error() string {
	return fmt.Sprintf("stream: %s %s of %s in %s (record %s/%d@%d): %v",
		e.Op, e.Part, e.Target, e.Operator, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the codec's error.
func (e *CodecError) Unwrap() error { return e.Err }

// Is reports whether target is codec.ErrDecode and e is a decode failure.
func (e *CodecError) Is(target error) bool {
	return target == codec.ErrDecode && e.Op == "decode"
}

// processError is an error returned by a Process function, wrapped with the
// processor's name. It unwraps to the user's error.
type processError struct {
	op, name string
	err      error
}

func (e *processError) Error() string {
	return fmt.Sprintf("stream: %s %q: %v", e.op, e.name, e.err)
}
func (e *processError) Unwrap() error { return e.err }

// HookError is the error of one output of a stream-time hook that failed
// downstream: a window released by SuppressUntilWindowCloses, an unpaired
// result of StreamLeftJoin or StreamOuterJoin, a call of a stream-time timer
// (Every with StreamTime). Hooks run inside the record that moved stream
// time; the output's effects are discarded and the runtime's error policy
// decides whether that record fails (processor.Fail) or goes on without the
// output (Skip, DeadLetter), so that one bad output does not fail every later
// record of the partition. A late output is not a HookError: the operator
// that finds it late drops it (see ErrLateRecord). It unwraps to the cause.
type HookError struct {
	// Operator is the hook's operator, e.g. `SuppressUntilWindowCloses
	// "final-counts"`.
	Operator string
	// Timestamp is the output's timestamp; StreamTime the task's new
	// stream time.
	Timestamp, StreamTime time.Time
	// Err is the cause: a user function's error, a codec error, an output
	// too large.
	Err error
}

func (e *HookError) Error() string {
	return fmt.Sprintf("stream: output of %s at %s (stream time %s): %v",
		e.Operator, e.Timestamp.Format(time.RFC3339Nano), e.StreamTime.Format(time.RFC3339Nano), e.Err)
}

// Unwrap returns the cause.
func (e *HookError) Unwrap() error { return e.Err }

// RecordError is the error of an input record that a stage could not
// process: its key or value does not decode, a user function returned an
// error or panicked (the cause is then a *PanicError), or an output is too
// large. The runtime (package processor, under its Fail policy) and the test
// driver (package streamtest) both return it, and both discard every effect
// of the record: none of its store writes and outputs happen, and the runtime
// commits nothing at or past its offset. It unwraps to the cause.
type RecordError struct {
	// Stage is the name of the stage that read the record.
	Stage string
	// Topic (the physical topic name), Partition and Offset say where the
	// record is.
	Topic     string
	Partition int32
	Offset    int64
	// Err is the cause: a *CodecError, a *PanicError, a *LateRecordError,
	// a *NullKeyError, a user function's error, ...
	Err error
}

// Error returns e.g. `stage words: record lines/0@17: panic: boom`.
func (e *RecordError) Error() string {
	return fmt.Sprintf("stage %s: record %s/%d@%d: %v", e.Stage, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

// PanicError is the cause in a RecordError or TimerError when a user function
// panicked: the runtime and the test driver recover the panic, so that one
// bad record goes to the error policy instead of crashing the process.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the panicking goroutine's stack (runtime/debug.Stack).
	Stack []byte
}

// Error returns "panic: " and the panic's value.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// TimerError is the error of a call of a stage's wall-clock timers (Every
// with WallClock) that failed in one task: a timer function returned an
// error or panicked (the cause is then a *PanicError), or an output is too
// large. The call's effects are discarded. Under processor.Fail the runtime
// stops the stage with it; the test driver's AdvanceWallClock fails the test
// with it. (A stream-time timer fails inside the record that moved stream
// time instead: see StreamTime and HookError.) It unwraps to the cause.
type TimerError struct {
	// Stage is the stage's name, Partition its task's partition.
	Stage     string
	Partition int32
	// Err is the cause.
	Err error
}

// Error returns e.g. `stage alerts: task 3: wall-clock timer: boom`.
func (e *TimerError) Error() string {
	return fmt.Sprintf("stage %s: task %d: wall-clock timer: %v", e.Stage, e.Partition, e.Err)
}

// Unwrap returns the cause.
func (e *TimerError) Unwrap() error { return e.Err }
