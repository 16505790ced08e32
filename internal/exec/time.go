package exec

import "time"

// Time in a stage. A task's stream time is the largest timestamp of the
// records it has processed (Kafka Streams' stream time): windows close,
// suppressed results are released, windowed state expires and stream-time
// timers fire when it passes their time. A compiled stage that needs it
// keeps it in a store of its own (stream.Stage.TimeStore), written in the
// same transaction as the record that moved it and restored from its
// changelog like any state, so a restarted task decides exactly as the
// crashed one would have. The Program advances it for every record; the
// runtime does not compute it.
//
// Wall-clock time is the runtime's clock. Wall-clock timers fire when the
// runtime calls the stage's Punctuator with WallClock, once per cycle per
// task; they are not persisted: a restarted task starts counting from its
// start.

// Clock says which time a timer follows.
type Clock int

const (
	// StreamTime is the task's stream time.
	StreamTime Clock = iota
	// WallClock is the runtime's clock.
	WallClock
)

// String returns "stream time" or "wall clock".
func (c Clock) String() string {
	switch c {
	case StreamTime:
		return "stream time"
	case WallClock:
		return "wall clock"
	}
	return "Clock(?)"
}

// Punctuator is the time-driven side of a compiled stage: what it does when
// time passes without a record. A stage without timers, windows or
// suppression has none (stream.Stage.Punctuator returns nil).
type Punctuator struct {
	// WallClock reports that the stage has wall-clock timers: the runtime
	// must call Punctuate with WallClock regularly (every cycle) for each
	// of its tasks.
	WallClock bool

	// Punctuate runs what is due on clock for task t, staging every store
	// write and emit in t exactly as a Program does for a record: the
	// caller applies them only if Punctuate returns nil, and they commit
	// in the caller's open transaction (a timer's effects commit with the
	// cycle that fired it).
	//
	// For WallClock it runs the wall-clock timers due in (prev, now]; the
	// caller keeps prev per task (the previous call's now, or the time the
	// task started). For StreamTime, prev is ignored: it advances the
	// task's stream time to now, if now is later, as a record with
	// timestamp now would (without the record): windows that close are
	// released, expired state is deleted and stream-time timers fire.
	//
	// An error (or a panic, which the caller recovers) comes from a user's
	// timer function, a codec or t; nothing of the call may be applied.
	Punctuate func(t Task, clock Clock, prev, now time.Time) error
}
