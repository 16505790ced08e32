package processor

import (
	"github.com/sluicehq/sluice/internal/exec"
)

// Outputs of stream-time hooks (see exec.Drops): a window released by
// suppression, an unpaired stream-stream join result or a stream-time
// timer's call runs inside the record that moved stream time, and the
// compiled stage judges it on its own, so that a bad output does not fail
// that record and, through its undone stream-time advance, every later one.

var _ exec.Drops = (*task)(nil)

// DropLate implements exec.Drops: a hook's output that an operator
// downstream dropped as late is counted in StageMetrics.Late (not in
// Skipped: no input record was skipped) and logged.
func (t *task) DropLate(err error) {
	t.st.metrics.late.Add(1)
	t.st.log.Warn("dropping a late record emitted by a stream-time hook", "partition", t.id.Partition, "err", err)
}

// DropFailed implements exec.Drops: under Fail the hook's output fails the
// input record (the stage stops, naming it); under Skip and DeadLetter the
// output, whose effects the stage already discarded, is counted in Skipped
// and logged, and the record goes on (there is no input record to
// dead-letter: the output was made by the stage).
func (t *task) DropFailed(err error) error {
	if t.st.cfg.policy == Fail {
		return err
	}
	t.st.metrics.skipped.Add(1)
	t.st.log.Warn("dropping an output of a stream-time hook", "partition", t.id.Partition, "err", err)
	return nil
}
