package checkpoint_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
)

func TestPlan(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cp := func(topic [16]byte, next int64, age time.Duration) checkpoint.Checkpoint {
		return checkpoint.Checkpoint{
			Stores:  map[string]checkpoint.Store{"counts": {TopicID: topic, Next: next}},
			Written: now.Add(-age),
		}
	}
	log := func(topic [16]byte, start, hw int64, retention time.Duration) checkpoint.LogState {
		return checkpoint.LogState{TopicID: topic, LogStart: start, HighWatermark: hw, DeleteRetention: retention}
	}
	var zero [16]byte

	tests := []struct {
		name  string
		cp    checkpoint.Checkpoint
		found bool
		store string
		log   checkpoint.LogState
		want  checkpoint.Decision
	}{
		{
			name: "no checkpoint", found: false, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10, Reason: "no checkpoint"},
		},
		{
			name: "no checkpoint for store", cp: cp(id(1), 20, time.Minute), found: true, store: "other",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10, Reason: "no checkpoint for store other"},
		},
		{
			name: "found but no stores at all", cp: checkpoint.Checkpoint{Written: now}, found: true, store: "counts",
			log:  log(id(1), 0, 50, 0),
			want: checkpoint.Decision{Rebuild: true, From: 0, Reason: "no checkpoint for store counts"},
		},
		{
			name: "topic recreated", cp: cp(id(1), 20, time.Minute), found: true, store: "counts",
			log:  log(id(2), 0, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 0, Reason: "changelog topic was recreated (topic id differs)"},
		},
		{
			name: "checkpoint topic id unknown: not compared", cp: cp(zero, 20, time.Minute), found: true, store: "counts",
			log:  log(id(2), 0, 50, day),
			want: checkpoint.Decision{From: 20, Reason: "resume from checkpoint offset 20"},
		},
		{
			name: "log topic id unknown: not compared", cp: cp(id(1), 20, time.Minute), found: true, store: "counts",
			log:  log(zero, 0, 50, day),
			want: checkpoint.Decision{From: 20, Reason: "resume from checkpoint offset 20"},
		},
		{
			name: "below log start", cp: cp(id(1), 5, time.Minute), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10, Reason: "checkpoint offset 5 is below the log start offset 10"},
		},
		{
			name: "at log start", cp: cp(id(1), 10, time.Minute), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{From: 10, Reason: "resume from checkpoint offset 10"},
		},
		{
			name: "above high watermark", cp: cp(id(1), 99, time.Minute), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10, Reason: "checkpoint offset 99 is above the high watermark 50"},
		},
		{
			name: "at high watermark: nothing to replay", cp: cp(id(1), 50, time.Minute), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{From: 50, Reason: "resume from checkpoint offset 50"},
		},
		{
			name: "empty log, empty checkpoint", cp: cp(id(1), 0, time.Minute), found: true, store: "counts",
			log:  log(id(1), 0, 0, day),
			want: checkpoint.Decision{From: 0, Reason: "resume from checkpoint offset 0"},
		},
		{
			name: "older than delete.retention.ms", cp: cp(id(1), 20, 25*time.Hour), found: true, store: "counts",
			log: log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10,
				Reason: "checkpoint is older than delete.retention.ms (24h0m0s): tombstones may have been compacted away"},
		},
		{
			name: "exactly delete.retention.ms old", cp: cp(id(1), 20, day), found: true, store: "counts",
			log: log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10,
				Reason: "checkpoint is older than delete.retention.ms (24h0m0s): tombstones may have been compacted away"},
		},
		{
			name: "just younger than delete.retention.ms", cp: cp(id(1), 20, day-time.Nanosecond), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{From: 20, Reason: "resume from checkpoint offset 20"},
		},
		{
			name: "tombstones never expire: no age limit", cp: cp(id(1), 20, 1000*day), found: true, store: "counts",
			log:  log(id(1), 10, 50, checkpoint.NoTombstoneExpiry),
			want: checkpoint.Decision{From: 20, Reason: "resume from checkpoint offset 20"},
		},
		{
			// delete.retention.ms=0 once read as "unknown, no limit":
			// a checkpoint a day old resumed past tombstones that
			// compaction may remove at once.
			name: "delete.retention.ms 0: every checkpoint is too old", cp: cp(id(1), 20, day), found: true, store: "counts",
			log: log(id(1), 10, 50, 0),
			want: checkpoint.Decision{Rebuild: true, From: 10,
				Reason: "delete.retention.ms is 0 or unknown: tombstones may have been compacted away at any moment"},
		},
		{
			name: "delete.retention.ms 0 or unknown, fresh checkpoint: fail closed", cp: cp(id(1), 20, 0), found: true, store: "counts",
			log: log(id(1), 10, 50, 0),
			want: checkpoint.Decision{Rebuild: true, From: 10,
				Reason: "delete.retention.ms is 0 or unknown: tombstones may have been compacted away at any moment"},
		},
		{
			// Nothing after the checkpoint: no tombstone can be missed.
			name: "delete.retention.ms 0, at the high watermark: resume", cp: cp(id(1), 50, day), found: true, store: "counts",
			log:  log(id(1), 10, 50, 0),
			want: checkpoint.Decision{From: 50, Reason: "resume from checkpoint offset 50"},
		},
		{
			name: "older than delete.retention.ms but at the high watermark: resume", cp: cp(id(1), 50, 30*day), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{From: 50, Reason: "resume from checkpoint offset 50"},
		},
		{
			name: "no write time but at the high watermark: resume", found: true, store: "counts",
			cp:   checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"counts": {TopicID: id(1), Next: 50}}},
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{From: 50, Reason: "resume from checkpoint offset 50"},
		},
		{
			name: "written in the future (clock skew)", cp: cp(id(1), 20, -time.Hour), found: true, store: "counts",
			log:  log(id(1), 10, 50, day),
			want: checkpoint.Decision{From: 20, Reason: "resume from checkpoint offset 20"},
		},
		{
			name: "no write time with known retention", found: true, store: "counts",
			cp:  checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"counts": {TopicID: id(1), Next: 20}}},
			log: log(id(1), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10,
				Reason: "checkpoint has no write time and delete.retention.ms is 24h0m0s: tombstones may have been compacted away"},
		},
		{
			name: "no write time, tombstones never expire", found: true, store: "counts",
			cp:   checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"counts": {TopicID: id(1), Next: 20}}},
			log:  log(id(1), 10, 50, checkpoint.NoTombstoneExpiry),
			want: checkpoint.Decision{From: 20, Reason: "resume from checkpoint offset 20"},
		},
		{
			name: "topic check comes before offset checks", cp: cp(id(1), 99, 30*day), found: true, store: "counts",
			log:  log(id(2), 10, 50, day),
			want: checkpoint.Decision{Rebuild: true, From: 10, Reason: "changelog topic was recreated (topic id differs)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkpoint.Plan(tt.cp, tt.found, tt.store, tt.log, now)
			if got != tt.want {
				t.Fatalf("Plan =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}
