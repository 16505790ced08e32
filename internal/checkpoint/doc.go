// Package checkpoint records what a task's local state has applied, and
// decides on restore whether that state can be kept. Only sluice's runtime
// (package processor, and package state, which stores checkpoints) imports
// it, which is why it is internal.
//
// A [Checkpoint] says, for each state store of a task, which changelog topic
// the store was built from (by Kafka topic id) and the next changelog offset
// it has not applied. It is written by package state in the same Pebble batch
// as the store changes it describes, so the two can never disagree (see
// package state). This package is pure: it encodes, decodes and compares, and
// does no I/O.
//
// # Encoding
//
// [Checkpoint.MarshalBinary] writes a version byte (1) followed by a compact,
// deterministic encoding: map entries sorted by key, lengths and counts as
// uvarints, offsets as zig-zag varints. The same Checkpoint always encodes to
// the same bytes. [Checkpoint.UnmarshalBinary] rejects an unknown version,
// truncated input, non-minimal varints, trailing bytes and unsorted or
// duplicate keys with an error that matches [ErrCorrupt] and says what is
// wrong, so every checkpoint has exactly one encoding. The caller should treat
// a corrupt checkpoint like a missing one (rebuild from the changelog).
//
// # Recovery
//
// [Plan] is the restore decision for one store. The local state is wiped and
// rebuilt from the changelog's log start offset when there is no checkpoint,
// the changelog topic was recreated (its topic id differs), the checkpoint's
// offset is below the log start offset (records it has not applied were
// deleted) or above the high watermark (the topic was truncated, or is not
// the one the state was built from), or, when there is anything to replay
// (the offset is below the high watermark), the checkpoint is older than the
// changelog's delete.retention.ms: compaction may have removed tombstones,
// so replaying from the checkpoint could bring deleted keys back. Otherwise
// the restore replays the changelog from the checkpoint's offset.
//
// delete.retention.ms=0, and a retention the caller could not read (pass
// zero for both), fail closed: no checkpoint below the high watermark is
// trusted, because a tombstone may be gone at any moment. A topic whose
// tombstones never expire on their own (not compacted) is described with
// [NoTombstoneExpiry].
//
// The age rule is only as sound as [Checkpoint.Written]: it must be a time
// before which no record at or past the checkpoint's offsets was written.
// A writer stamps a checkpoint with the moment the transaction it covers
// began to end; a restore stamps its progress checkpoints with the time of
// the checkpoint it resumed from (or the start of its rebuild), never with
// the time of the flush, since the records after a progress offset may be
// much older than the flush.
package checkpoint
