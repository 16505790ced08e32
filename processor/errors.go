package processor

import (
	"errors"

	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/stream"
)

var (
	// ErrConfig is wrapped by every configuration error New and Run return:
	// a missing or invalid option, a missing topic, or a partition count that
	// does not match. The message says what to change.
	ErrConfig = errors.New("processor: configuration error")

	// ErrRecordTooLarge is wrapped by the error of a record whose output (or
	// state change) is larger than MaxRecordBytes. The stage's error policy
	// handles it; it never fails a transaction half-way.
	ErrRecordTooLarge = exec.ErrRecordTooLarge

	// ErrStateLocked is matched (errors.Is) by the error Run returns when
	// another process, or another Processor in this process, has the
	// state directory open (see StateDir). The error names the directory.
	ErrStateLocked = state.ErrLocked

	// ErrUnreachable is returned by Run when no broker answered within the
	// startup timeout.
	ErrUnreachable = errors.New("processor: brokers unreachable")

	// errUnknownOutcome marks a transaction that may or may not have
	// committed on the broker; the stage rebuilds from its checkpoints.
	errUnknownOutcome = errors.New("transaction outcome unknown")

	// errPartitionMoved marks a cycle that polled a record of a partition
	// that left this member (or whose task was replaced) while the cycle
	// ran: the cycle is aborted on purpose and nothing restarts.
	errPartitionMoved = errors.New("partition moved to another member during the cycle")
)

// RecordError is the error of a record a stage could not process (see
// stream.RecordError). With the Fail policy, Run returns it (wrapped);
// nothing at or past the record's offset was committed. streamtest's driver
// returns the same type.
type RecordError = stream.RecordError

// PanicError is the cause in a RecordError or TimerError when a user
// function panicked (see stream.PanicError).
type PanicError = stream.PanicError

// TimerError is the error of a stage's wall-clock timers (stream.Every with
// stream.WallClock) that failed in one task (see stream.TimerError). Under
// the Fail policy Run returns it; StageMetrics.TimerErrors counts them.
type TimerError = stream.TimerError

// PunctuationError is the old name of TimerError.
//
// Deprecated: use TimerError.
type PunctuationError = TimerError
