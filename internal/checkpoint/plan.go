package checkpoint

import (
	"fmt"
	"time"
)

// LogState is what the broker says about a store's changelog partition when
// a restore starts.
type LogState struct {
	// TopicID is the changelog topic's Kafka topic id, or all zeros when
	// unknown (then it is not compared).
	TopicID [16]byte
	// LogStart is the partition's log start offset.
	LogStart int64
	// HighWatermark is the partition's high watermark.
	HighWatermark int64
	// DeleteRetention is how long compaction keeps a tombstone: the
	// changelog topic's delete.retention.ms when it is compacted.
	//
	// Zero means delete.retention.ms=0 or unknown (the setting could not
	// be read): a tombstone may be gone at any moment, so Plan trusts no
	// checkpoint's age and rebuilds. This fails closed: a rebuild costs a
	// replay, while resuming past a removed tombstone brings a deleted key
	// back. [NoTombstoneExpiry] means no age limit applies (the topic is
	// not compacted, so no tombstone is removed before the records around
	// it, which the log start offset check covers).
	DeleteRetention time.Duration
}

// NoTombstoneExpiry is the [LogState.DeleteRetention] of a topic whose
// tombstones never expire on their own: one that is not compacted
// (cleanup.policy=delete), or whose delete.retention.ms is too large for a
// time.Duration.
const NoTombstoneExpiry time.Duration = -1

// Decision is the outcome of [Plan].
type Decision struct {
	// Rebuild reports that the local state must be wiped and replayed from
	// the log start offset.
	Rebuild bool
	// From is the changelog offset to start the replay at: the log start
	// offset when Rebuild is set, else the checkpoint's offset.
	From int64
	// Reason explains the decision for logs, e.g. "changelog topic was
	// recreated (topic id differs)".
	Reason string
}

// Plan decides how to restore store from the changelog described by log,
// given the task's checkpoint cp (found reports whether the task had one) and
// the current time.
//
// It returns Rebuild, with From = log.LogStart, when:
//   - found is false ("no checkpoint");
//   - cp has no entry for store ("no checkpoint for store X");
//   - both topic ids are known (non-zero) and differ: the changelog was
//     deleted and recreated, so the local state belongs to another log;
//   - the checkpoint offset is below log.LogStart: records the state never
//     applied were deleted;
//   - the checkpoint offset is above log.HighWatermark: the log is not the
//     one the state was built from (or lost committed data);
//   - the checkpoint offset is below log.HighWatermark (with nothing to
//     replay, no tombstone can be missed) and log.DeleteRetention is zero
//     (delete.retention.ms=0, or unknown: fail closed), or it is positive
//     and cp was written at least that long before now, or cp has no write
//     time: compaction may have removed tombstones the state has not
//     applied, and replaying the rest would bring deleted keys back.
//
// cp.Written must be a time before which no changelog record at or after
// the checkpoint's offsets was written (see [Checkpoint.Written]); the age
// rule is only as sound as that promise.
//
// Otherwise it returns From = the checkpoint offset. The checks run in that
// order and the first that applies gives the Reason.
func Plan(cp Checkpoint, found bool, store string, log LogState, now time.Time) Decision {
	rebuild := func(reason string) Decision {
		return Decision{Rebuild: true, From: log.LogStart, Reason: reason}
	}
	if !found {
		return rebuild("no checkpoint")
	}
	s, ok := cp.Stores[store]
	if !ok {
		return rebuild(fmt.Sprintf("no checkpoint for store %s", store))
	}
	var unknown [16]byte
	if s.TopicID != unknown && log.TopicID != unknown && s.TopicID != log.TopicID {
		return rebuild("changelog topic was recreated (topic id differs)")
	}
	if s.Next < log.LogStart {
		return rebuild(fmt.Sprintf("checkpoint offset %d is below the log start offset %d", s.Next, log.LogStart))
	}
	if s.Next > log.HighWatermark {
		return rebuild(fmt.Sprintf("checkpoint offset %d is above the high watermark %d", s.Next, log.HighWatermark))
	}
	if s.Next == log.HighWatermark {
		// Nothing to replay: no tombstone after the checkpoint exists
		// yet, so its age does not matter.
		return Decision{From: s.Next, Reason: fmt.Sprintf("resume from checkpoint offset %d", s.Next)}
	}
	if log.DeleteRetention == 0 {
		return rebuild("delete.retention.ms is 0 or unknown: tombstones may have been compacted away at any moment")
	}
	if log.DeleteRetention > 0 {
		if cp.Written.IsZero() {
			return rebuild(fmt.Sprintf("checkpoint has no write time and delete.retention.ms is %v: tombstones may have been compacted away", log.DeleteRetention))
		}
		// A tombstone at or after s.Next was written after the checkpoint,
		// and compaction keeps it for at least delete.retention.ms; so a
		// replay that starts sooner than that after cp.Written still sees it.
		// At the boundary itself, rebuild.
		if now.Sub(cp.Written) >= log.DeleteRetention {
			return rebuild(fmt.Sprintf("checkpoint is older than delete.retention.ms (%v): tombstones may have been compacted away", log.DeleteRetention))
		}
	}
	return Decision{From: s.Next, Reason: fmt.Sprintf("resume from checkpoint offset %d", s.Next)}
}
