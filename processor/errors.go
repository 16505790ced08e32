package processor

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/internal/exec"
)

var (
	// ErrConfig is wrapped by every configuration error New and Run return:
	// a missing or invalid option, a missing topic, or a partition count that
	// does not match. The message says what to change.
	ErrConfig = errors.New("sluice: configuration error")

	// ErrRecordTooLarge is wrapped by the error of a record whose output (or
	// state change) is larger than MaxRecordBytes. The stage's error policy
	// handles it; it never fails a transaction half-way.
	ErrRecordTooLarge = exec.ErrRecordTooLarge

	// ErrUnreachable is returned by Run when no broker answered within the
	// startup timeout.
	ErrUnreachable = errors.New("sluice: brokers unreachable")

	// errUnknownOutcome marks a transaction that may or may not have
	// committed on the broker; the stage rebuilds from its checkpoints.
	errUnknownOutcome = errors.New("transaction outcome unknown")

	// errPartitionMoved marks a cycle that polled a record of a partition
	// that left this member (or whose task was replaced) while the cycle
	// ran: the cycle is aborted on purpose and nothing restarts.
	errPartitionMoved = errors.New("partition moved to another member during the cycle")
)

// RecordError is the error of a record the stage could not process: it does
// not decode, the user's function returned an error or panicked, or an output
// is too large. With the Fail policy, Run returns it (wrapped); nothing at or
// past the record's offset was committed.
type RecordError struct {
	Stage     string
	Topic     string
	Partition int32
	Offset    int64
	Err       error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("stage %s: record %s/%d@%d: %v", e.Stage, e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *RecordError) Unwrap() error { return e.Err }

// PanicError is the cause in a RecordError when the user's function panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }
