package streamtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/stream"
)

// AdvanceStreamTime moves the stream time of every task of every stage that
// keeps one (a stage with windows, suppression, a stream-stream join or a
// stream-time timer) to t, where t is later than the task's stream time, as
// a record with timestamp t would, but without a record: windows that close
// are released (SuppressUntilWindowCloses), expired windowed state is
// deleted and stream-time timers fire. The records this emits are processed
// before it returns. An error fails the test; the failing task's effects of
// that call are discarded.
//
// The runtime has no such call: there stream time moves only with records.
// Use it to close the last windows of a test's input.
func (d *Driver) AdvanceStreamTime(t time.Time) {
	d.tb.Helper()
	if err := d.punctuate(exec.StreamTime, time.Time{}, t); err != nil {
		d.fatalf("AdvanceStreamTime(%v): %v", t, err)
	}
}

// StreamTime returns the stream time of task partition of the stage named
// stage: the largest timestamp among the records it processed (or the time
// AdvanceStreamTime gave it), and false if it has none yet or the stage
// keeps no stream time.
func (d *Driver) StreamTime(stage string, partition int32) (time.Time, bool) {
	for _, st := range d.stages {
		if st.spec.Name != stage || st.spec.TimeStore == "" {
			continue
		}
		tk := st.tasks[partition]
		if tk == nil {
			return time.Time{}, false
		}
		for _, v := range tk.stores[st.spec.TimeStore] {
			if len(v) == 8 {
				return time.UnixMilli(int64(binary.BigEndian.Uint64(v))).UTC(), true
			}
		}
	}
	return time.Time{}, false
}

// punctuate calls the Punctuator of every stage that has one for clock, in
// every task, staging each task's effects in a Scope as the runtime does,
// and then processes what they emitted.
func (d *Driver) punctuate(clock exec.Clock, prev, now time.Time) error {
	var errs []error
	// Records piped in an open Batch first, as their cycles would come
	// before the timers' in the runtime.
	if err := d.run(); err != nil {
		errs = append(errs, err)
	}
	for _, st := range d.stages {
		if st.punct == nil || (clock == exec.WallClock && !st.punct.WallClock) ||
			(clock == exec.StreamTime && st.spec.TimeStore == "") {
			continue
		}
		for p := range int32(st.partitions) {
			tk := st.task(p)
			sc := &d.scope
			sc.Begin(tk, d.cfg.maxRecordBytes)
			err := punctuateCall(st.punct, sc, clock, prev, now)
			if err == nil {
				err = sc.Err()
			}
			if err == nil {
				err = d.apply(st, tk, sc)
			}
			switch {
			case err != nil && clock == exec.WallClock:
				// As the runtime reports a wall-clock timer.
				errs = append(errs, &stream.TimerError{Stage: st.spec.Name, Partition: p, Err: err})
			case err != nil:
				errs = append(errs, fmt.Errorf("stage %s, task %d, %s: %w", st.spec.Name, p, clock, err))
			}
		}
		d.commit() // the stage's timers fire in one cycle
	}
	if err := d.run(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// punctuateCall runs a Punctuator, turning a panic into a *PanicError, as
// the runtime does.
func punctuateCall(p *exec.Punctuator, t exec.Task, clock exec.Clock, prev, now time.Time) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return p.Punctuate(t, clock, prev, now)
}
