// Package state keeps the local state of a processor instance in Pebble: the
// key-value stores of its tasks, and each task's checkpoint, in one Pebble
// database per instance ([Open]). It is the runtime's floor: only package
// processor (and tests) import it, which is why it is internal; users reach
// their stores through package stream, and size the cache and place the
// directory with processor options (StateCacheSize, StateDir).
//
// The runtime reads and writes stores inside a [Txn], which buffers one
// transaction's changes for any number of tasks in an indexed Pebble batch.
// [Txn.Store] gives the byte-level view of one store partition ([Store]);
// the typed view users see is package stream's (stream.Get, stream.Put).
// Reads see the Txn's own earlier writes merged over the applied state
// (read-your-writes); nothing reaches the database before [Txn.Apply].
//
// # Key layout
//
// Each (store, partition) is one contiguous key range, and each task has one
// checkpoint key:
//
//	store data:      0x01 | uvarint(len(store)) | store | partition (4 bytes, big-endian) | user key
//	task checkpoint: 0x02 | uvarint(len(stage)) | stage | partition (4 bytes, big-endian)
//
// So a scan of partition 1 never sees partition 2's keys, store "a" never
// sees store "ab"'s, and wiping a task is one DeleteRange per store.
//
// A global table (a full copy of a topic on every instance) uses the same
// layout under the reserved store name "global:<table>" ([GlobalStore]):
// its data, all source partitions merged, under partition -1
// ([GlobalPartition]), read with [DB.Global]; one checkpoint per source
// partition ([GlobalCheckpoint]); [DB.WipeGlobal] deletes both. No store or
// stage name contains ':', so these keys never meet a task's.
//
// # Exactly-once
//
// The runtime's invariant is that Pebble never holds a write whose Kafka
// transaction did not commit, and that a task's state always equals the
// replay of its committed changelog up to its checkpoint. This package keeps
// the second half by construction: [Txn.Apply] writes a transaction's data
// and its tasks' checkpoints ([Txn.SetCheckpoint]) in ONE Pebble batch, which
// Pebble applies atomically, so no crash can leave data without its
// checkpoint or a checkpoint without its data. The runtime keeps the first
// half by calling Apply only after the Kafka transaction committed, and
// [Txn.Discard] otherwise.
//
// # Recovery
//
// Apply does not wait for the disk (pebble.NoSync). A machine crash may lose
// the last applied batches. Pebble replays its write-ahead log in order and
// stops at the first incomplete batch, so what survives is a prefix of the
// applied batches, each whole; and because each batch carries its own
// checkpoint, the surviving data and checkpoint always match: the task just
// replays a longer tail of its changelog. (Kafka Streams under exactly-once
// wipes its state after an unclean shutdown; here a crash costs only that
// replay.) [DB.Wipe] and [Writer.Apply] skip the sync for the same reason:
// a lost wipe or restore batch leaves an older, still consistent, pair of
// data and checkpoint, and the next restore decides again.
//
// On restore, the runtime reads the task's checkpoint ([DB.Checkpoint]) and
// asks [checkpoint.Plan] whether it is still usable. If not, [DB.Wipe]
// deletes the task's store ranges and checkpoint in one batch. The changelog
// is then replayed through a [Writer] (a cheaper, non-indexed batch), applied
// every few MiB together with a checkpoint of the offset reached, so an
// interrupted restore resumes where it stopped.
//
// # Memory
//
// Slices returned by [Store.Get] and passed to [Store.Scan]'s callback are
// valid until the next call on the Store; arguments are never retained.
//
// # Locking
//
// One DB per state directory: [Open] fails with an error matching
// [ErrLocked] while another process, or another DB in this process, has the
// directory open.
package state
