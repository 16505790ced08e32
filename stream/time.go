package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/exec"
)

// Time in a topology.
//
// Every record has a timestamp: the Kafka record's, or the one a Source's
// ExtractTimestamp function returns. A task's stream time is the largest
// timestamp among the records it has processed (Kafka Streams' stream time).
// It only moves forward, and only with records, so it does not depend on
// when or how fast records are processed: a replay decides as the first run
// did. Windows close, suppressed results are released, windowed state
// expires and stream-time timers fire when the stream time passes their
// time.
//
// A stage that needs stream time (it has windows, suppression, a
// stream-stream join or a stream-time timer) keeps it in a store of its own,
// "<stage>-stream-time" (Stage.timeStore), with a changelog like any store.
// The record that moves it writes it in the same transaction as its other
// effects, so after a crash the restored task has exactly the stream time of
// its last committed transaction, and windows, grace periods and suppression
// decide as they would have without the crash.
//
// Timestamps are used with millisecond precision, as Kafka stores them.

// Clock says which time a timer follows.
type Clock int

const (
	// StreamTime is the task's stream time: it advances only with records,
	// so a timer on it fires at the same points of the input in every run
	// (and in the test driver). A stream-time timer runs as part of the
	// record that advanced stream time past its time: its effects commit
	// with the record's. Its error is the timer's, not the record's: the
	// timer's effects are discarded and the runtime's error policy decides
	// (processor.Fail fails the record, which stops the stage; Skip and
	// DeadLetter let the record and its stream-time advance go on without
	// the timer's effects), so a failing timer does not fail every record
	// that follows.
	StreamTime Clock = iota
	// WallClock is the runtime's clock: the timer fires when the clock
	// passes its time, whether records arrive or not, checked once per
	// cycle (processor.CommitInterval). Its effects commit in the
	// transaction of the cycle that fired it. Wall-clock timers are not
	// deterministic: after a crash, a cycle that fired one may run again
	// at another time.
	WallClock
)

// String returns "stream time" or "wall clock".
func (c Clock) String() string { return exec.Clock(c).String() }

// timer is a punctuation registered with Every.
type timer struct {
	interval time.Duration
	clock    Clock
	fn       func(h *Handle, now time.Time) error
}

type everyOpt timer

func (o everyOpt) apply(c *opConfig) { c.timers = append(c.timers, timer(o)) }
func (everyOpt) processOption()      {}

// Every registers a timer (a punctuation) on a Process or ProcessTo
// operator: fn runs, once per task, each time clock crosses a multiple of
// interval (counted from the Unix epoch); if the clock jumps over several
// multiples at once, fn runs once. now is the clock's time: for StreamTime
// the new stream time, for WallClock the runtime's clock. A task's first
// record sets its stream time without firing stream-time timers.
//
// fn reaches stores and outputs through h as the operator's function does
// (Uses, EmitsTo); h has no current record, and records fn emits carry now
// as their timestamp. Its effects are exactly-once like a record's: they
// commit in the transaction of the cycle that fired the timer, or not at
// all. An error discards the call's effects and goes to the runtime's error
// policy (processor.Fail stops the stage): for StreamTime as a failure of the
// timer inside the record that moved stream time (see StreamTime), for
// WallClock as a failure of the cycle's timers. interval must be at least a
// millisecond (Build reports ErrInvalidArgument).
func Every(interval time.Duration, clock Clock, fn func(h *Handle, now time.Time) error) ProcessOption {
	return everyOpt{interval: interval, clock: clock, fn: fn}
}

// ErrLateRecord is matched (errors.Is) by the error a stage's Program returns
// for an input record that arrived after every window it belongs to had
// closed: for time windows, every window [start, end) holding its timestamp
// closed when stream time reached end + grace; for sessions, the session it
// would start, extend or merge into ends more than gap + grace before stream
// time; for a stream-stream join, its timestamp is more than the join window
// + grace behind stream time. A record at most the grace period behind
// stream time is never late, and one further behind is still taken by a time
// window that is open. The runtime counts such records
// (processor.StageMetrics.Late) and hands them to the stage's error policy;
// under processor.Fail a late record stops the stage, so topologies with
// windows usually run with processor.Skip or processor.DeadLetter, or a
// larger grace period. The concrete error is a *LateRecordError.
//
// A record that a stream-time hook emits (a window released by
// SuppressUntilWindowCloses, an unpaired result of StreamLeftJoin or
// StreamOuterJoin) and that a windowed operator or join downstream, in the
// same stage, finds late is not an error: that operator drops it, as Kafka
// Streams does, and the runtime counts it in StageMetrics.Late; the input
// record that moved stream time goes on. Such drops happen when the
// downstream windows close no later than the upstream ones release: give the
// downstream operator a grace period longer than the upstream's close delay
// (see SuppressUntilWindowCloses), or put a repartition between them (the
// next stage's stream time follows the released records).
var ErrLateRecord = errors.New("stream: late record")

// LateRecordError reports a record that arrived too late for a windowed
// operator or a stream-stream join. It matches ErrLateRecord.
type LateRecordError struct {
	// Operator is the windowed operator, e.g. `WindowedCount "clicks-per-minute"`.
	Operator string
	// Timestamp is the record's timestamp; StreamTime the task's stream
	// time when it arrived; Grace the operator's grace period (for a
	// stream-stream join: the join window plus the grace).
	Timestamp, StreamTime time.Time
	Grace                 time.Duration
}

func (e *LateRecordError) Error() string {
	return fmt.Sprintf("stream: late record in %s: timestamp %s is %v behind stream time %s, and every window it belongs to has closed (grace %v)",
		e.Operator, e.Timestamp.Format(time.RFC3339Nano), e.StreamTime.Sub(e.Timestamp), e.StreamTime.Format(time.RFC3339Nano), e.Grace)
}

// Is reports whether target is ErrLateRecord.
func (e *LateRecordError) Is(target error) bool { return target == ErrLateRecord }

// timeStoreSuffix names a stage's stream-time store: "<stage>-stream-time".
const timeStoreSuffix = "-stream-time"

// timeKey is the one key of a stream-time store; its value is the stream
// time in Unix milliseconds, 8 bytes big-endian (two's complement).
var timeKey = []byte("t")

// noTime is a task's stream time before its first record.
const noTime = math.MinInt64

// timeHook is what an operator does when its task's stream time advances
// from `from` (noTime before the first record) to `to`, both in Unix
// milliseconds. Hooks of phase 0 run before those of phase 1, each phase in
// operator order: operators that emit (suppression, joins, timers) read
// windowed state before the expiry of phase 1 deletes it.
type timeHook struct {
	phase int
	fn    func(h *Handle, from, to int64) error
}

// taskTime is the stream time a Handle works with: the stored value (read
// once per call) and the time of the current input record.
type taskTime struct {
	loaded bool
	stored int64 // noTime: none yet
	input  int64 // the input record's timestamp (after extraction), ms
	// hook is set while the stream-time hooks run: what flows through the
	// operators then is a hook's output (see hookOutput).
	hook bool
	// late holds the hook outputs that operators dropped as late during
	// this call; they are reported to the runtime (exec.Drops.DropLate)
	// when the call succeeds.
	late []error
}

// millis returns t in Unix milliseconds.
func millis(t time.Time) int64 { return t.UnixMilli() }

// fromMillis returns the UTC time of Unix milliseconds ms.
func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// streamTime returns the task's stream time including the current input
// record, in Unix milliseconds. It reads the stage's time store on first use.
func (h *Handle) streamTime() (int64, error) {
	if err := h.loadTime(); err != nil {
		return 0, err
	}
	return max(h.tm.stored, h.tm.input), nil
}

func (h *Handle) loadTime() error {
	if h.tm.loaded {
		return nil
	}
	name := h.prog.stage.timeStore
	if name == "" {
		return fmt.Errorf("stream: stage %q has no stream-time store", h.prog.stage.Name)
	}
	s := h.task.Store(name)
	if s == nil {
		return fmt.Errorf("stream: the runtime has no store %q in task %d of stage %q, which declares it",
			name, h.task.Partition(), h.prog.stage.Name)
	}
	v, ok, err := s.Get(timeKey)
	if err != nil {
		return err
	}
	h.tm.stored = noTime
	if ok {
		if len(v) != 8 {
			return fmt.Errorf("stream: stream-time store %q of stage %q holds %d bytes, want 8", name, h.prog.stage.Name, len(v))
		}
		h.tm.stored = int64(binary.BigEndian.Uint64(v))
	}
	h.tm.loaded = true
	return nil
}

// advanceTime moves the task's stream time to `to` if that is later: it
// writes the time store and runs the stage's hooks. Called after a record's
// operators succeeded, and by the Punctuator.
func (p *program) advanceTime(h *Handle, to int64) error {
	if err := h.loadTime(); err != nil {
		return err
	}
	from := h.tm.stored
	if to <= from {
		return nil
	}
	s := h.task.Store(p.stage.timeStore)
	if err := s.Put(timeKey, binary.BigEndian.AppendUint64(nil, uint64(to))); err != nil {
		return err
	}
	h.tm.stored = to
	// Hooks emit with their own timestamps, and with no headers.
	prevTS := h.ts
	prevH, prevSet := h.hdrs, h.hdrsSet
	h.hdrs, h.hdrsSet = nil, true
	h.tm.hook = true
	defer func() { h.ts, h.hdrs, h.hdrsSet, h.tm.hook = prevTS, prevH, prevSet, false }()
	for _, hk := range p.hooks {
		if err := hk.fn(h, from, to); err != nil {
			return err
		}
	}
	return nil
}

// Outputs of hooks. The hooks run inside the call that moved stream time,
// and what they emit is older than the new stream time: a released window
// carries its last update's timestamp, an unpaired join result its
// record's, a timer's effects its time. Failing the input record for such
// an output would also undo its stream-time advance, so the next record
// would run the same hook and fail again, and under processor.Skip every
// later record of the partition would be dropped. So a hook's output is
// handled on its own (see exec.Drops):
//
//   - an operator that finds it late drops it (dropLate) and the call goes
//     on, as Kafka Streams drops a late record and counts it in its
//     dropped-records sensor; the runtime counts it in StageMetrics.Late;
//   - any other error of one output (hookOutput) discards that output's
//     effects and goes to the runtime (exec.Drops.DropFailed), whose error
//     policy decides: processor.Fail fails the input record (the stage
//     stops), Skip and DeadLetter drop the output and go on.
//
// A store error of the hook itself (not of its output) still fails the
// call: it is the runtime's, not the data's.

// dropLate returns what an operator does with a record that arrived after
// every window it belongs to had closed: err for the stage's error policy
// when the record is the input record (or derived from it), nil when it is
// the output of a stream-time hook, which is dropped and noted for the
// runtime.
func (h *Handle) dropLate(err *LateRecordError) error {
	if !h.tm.hook {
		return err
	}
	h.tm.late = append(h.tm.late, err)
	return nil
}

// errScope is the part of exec.Scope that tells an effect's error that a
// user function may have swallowed.
type errScope interface{ Err() error }

// hookOutput runs emit, which produces one output of a stream-time hook of
// operator n (a released window, an unpaired join result, a timer's call)
// at timestamp ts, so that its failure is the output's: on an error,
// emit's effects are discarded and the runtime decides (exec.Drops). When
// the task cannot discard part of a call's effects (it is no
// exec.Savepoints), the error fails the call as any other.
func (h *Handle) hookOutput(n *node, ts time.Time, emit func() error) error {
	sp, ok := h.task.(exec.Savepoints)
	if !ok {
		return emit()
	}
	mark, nlate := sp.Savepoint(), len(h.tm.late)
	var before error
	es, hasErr := h.task.(errScope)
	if hasErr {
		before = es.Err()
	}
	err := emit()
	if err == nil && hasErr && es.Err() != before {
		err = es.Err() // an output too large, its error swallowed downstream
	}
	if err == nil {
		return nil
	}
	sp.RollbackTo(mark)
	h.tm.late = h.tm.late[:nlate]
	// The hooks run after loadTime: the stream time is at hand.
	herr := &HookError{Operator: n.label(), Timestamp: ts.UTC(), StreamTime: fromMillis(max(h.tm.stored, h.tm.input)), Err: err}
	if d, ok := h.task.(exec.Drops); ok {
		return d.DropFailed(herr)
	}
	return herr
}

// reportDrops hands the hook outputs dropped as late during the call to the
// runtime. Called once the call succeeded, so that the drops of a call whose
// effects are discarded are not counted.
func (h *Handle) reportDrops() {
	if d, ok := h.task.(exec.Drops); ok {
		for _, err := range h.tm.late {
			d.DropLate(err)
		}
	}
	h.tm.late = nil
}

// crossed reports whether a clock moving from `from` to `to` (Unix
// nanoseconds) crosses a multiple of interval.
func crossed(from, to int64, interval time.Duration) bool {
	return floorDiv(to, int64(interval)) > floorDiv(from, int64(interval))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// compileTimers collects the stage's hooks and wall-clock timers.
func (p *program) compileTimers() {
	for _, n := range p.stage.nodes {
		p.hooks = append(p.hooks, n.timeHooks...)
		for _, tm := range n.timers {
			switch tm.clock {
			case StreamTime:
				p.hooks = append(p.hooks, streamTimer(n, tm))
			case WallClock:
				p.wall = append(p.wall, wallTimer{n: n, t: tm})
			}
		}
	}
	slices.SortStableFunc(p.hooks, func(a, b timeHook) int { return a.phase - b.phase })
}

type wallTimer struct {
	n *node
	t timer
}

// streamTimer is the hook of a stream-time timer of Process operator n.
func streamTimer(n *node, tm timer) timeHook {
	return timeHook{phase: 0, fn: func(h *Handle, from, to int64) error {
		if from == noTime || !crossed(from*1e6, to*1e6, tm.interval) {
			return nil
		}
		now := fromMillis(to)
		return h.hookOutput(n, now, func() error { return runTimer(h, n, tm, now) })
	}}
}

// runTimer runs a timer of Process operator n with the operator's Uses and
// EmitsTo.
func runTimer(h *Handle, n *node, tm timer, now time.Time) error {
	prevProc, prevTS := h.proc, h.ts
	h.proc, h.ts = n, now
	err := tm.fn(h, now)
	h.proc, h.ts = prevProc, prevTS
	if err != nil {
		return wrapProcess(n, fmt.Errorf("%s timer every %v: %w", tm.clock, tm.interval, err))
	}
	return nil
}

// compilePunctuator compiles the stage's time-driven side for application id
// app: see topology.Stage.Punctuator for the contract.
func (s *Stage) compilePunctuator(app string) *exec.Punctuator {
	p := s.compile(app)
	if s.timeStore == "" && len(p.wall) == 0 {
		return nil
	}
	return &exec.Punctuator{
		WallClock: len(p.wall) > 0,
		Punctuate: func(t exec.Task, clock exec.Clock, prev, now time.Time) error {
			h := &Handle{task: t, prog: p, ts: now,
				rec: &exec.Record{Partition: t.Partition(), Offset: -1, Timestamp: now}}
			h.tm.input = noTime
			defer func() { h.task = nil }()
			switch clock {
			case exec.StreamTime:
				if s.timeStore == "" {
					return nil
				}
				if err := p.advanceTime(h, millis(now)); err != nil {
					return err
				}
				h.reportDrops()
				return nil
			case exec.WallClock:
				for _, w := range p.wall {
					if !crossed(prev.UnixNano(), now.UnixNano(), w.t.interval) {
						continue
					}
					if err := runTimer(h, w.n, w.t, now); err != nil {
						return err
					}
				}
				return nil
			}
			return fmt.Errorf("stream: unknown clock %d", int(clock))
		},
	}
}

// checkTimeStores reports stream-time stores whose names clash with a
// user's store.
func (b *Builder) checkTimeStores(stages []*Stage) []error {
	var errs []error
	for _, s := range stages {
		if s.timeStore == "" {
			continue
		}
		for _, st := range b.stores {
			if st.name == s.timeStore {
				errs = append(errs, errorf(ErrNameClash, "store %q of %s has the name of the stream-time store of stage %q; rename the store",
					st.name, st.by, s.Name))
			}
		}
	}
	return errs
}

// msDuration returns ms milliseconds as a Duration.
func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
