package processor

import (
	"runtime/debug"
	"slices"
	"time"

	"github.com/sluicehq/sluice/internal/exec"
)

// Timers. Stream-time timers, window closing, suppression and the expiry of
// windowed state run inside the stage's Program, as part of the record that
// moved a task's stream time (which the Program keeps in the stage's
// stream-time store): nothing here. Wall-clock timers (stream.Every with
// stream.WallClock) fire from the cycle: once per cycle, after the records,
// punctuateWall calls the stage's Punctuator for every task, staging the
// effects in the stage's exec.Scope as for a record, so they commit in the
// cycle's transaction (under ExactlyOnce) or not at all. A task remembers up
// to when its timers fired in committed transactions (task.wallPrev); a
// transaction that aborts leaves it behind, so its timers fire again.

// punctuateWall fires the due wall-clock timers of every task the stage
// owns. begin is called once before the first effect is applied (to begin
// the transaction). It reports whether any timer had effects, and returns a
// *TimerError under the Fail policy.
func (st *stage) punctuateWall(prod producer, begin func() error) (bool, error) {
	if st.punct == nil || !st.punct.WallClock {
		return false, nil
	}
	st.mu.Lock()
	tasks := make([]*task, 0, len(st.mu.tasks))
	for p, t := range st.mu.tasks {
		if !st.mu.revoked[p] {
			tasks = append(tasks, t)
		}
	}
	st.mu.Unlock()
	slices.SortFunc(tasks, func(a, b *task) int { return int(a.id.Partition - b.id.Partition) })

	now := st.p.now()
	effects := false
	for _, t := range tasks {
		prev := t.wallPrev
		if !now.After(prev) {
			continue
		}
		sc := &st.scope
		sc.Begin(t, st.p.cfg.maxRecordBytes)
		err := st.callPunctuate(sc, exec.WallClock, prev, now)
		if err == nil {
			err = sc.Err()
		}
		if err != nil {
			st.metrics.punctFailed.Add(1)
			perr := &TimerError{Stage: st.name, Partition: t.id.Partition, Err: err}
			if st.cfg.policy == Fail {
				return effects, perr
			}
			st.log.Warn("dropping the effects of a failed wall-clock timer", "partition", t.id.Partition, "err", err)
		}
		if err != nil || (len(sc.Writes()) == 0 && len(sc.Emits()) == 0) {
			// Nothing to commit: the timers are done up to now.
			t.wallPrev = now
			continue
		}
		if !effects {
			if err := begin(); err != nil {
				return effects, err
			}
			effects = true
		}
		if !t.dirty() {
			st.dirty = append(st.dirty, t)
		}
		t.wallNext = now
		if err := st.applyEffects(prod, t, sc); err != nil {
			return effects, err
		}
	}
	return effects, nil
}

// callPunctuate runs the Punctuator, turning a panic into a *PanicError.
func (st *stage) callPunctuate(t exec.Task, clock exec.Clock, prev, now time.Time) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return st.punct.Punctuate(t, clock, prev, now)
}
