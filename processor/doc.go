// Package processor runs a topology built with package stream against Kafka.
// Users import it into their processor binaries; it is part of sluice's
// stable API (see package stream), and its internals (Pebble state,
// checkpoints, the group balancer) live under internal/, where only it
// reaches them.
//
// A Processor is an ordinary Go value inside an ordinary binary:
//
//	p, err := processor.New(topo,
//		processor.Brokers("localhost:9092"),
//		processor.ApplicationID("wordcount"),
//		processor.StateDir("/var/lib/wordcount"),
//	)
//	if err != nil { ... }
//	err = p.Run(ctx) // until ctx is done
//
// Start more copies with the same application id and Kafka spreads the
// partitions over them. Each stage of the topology runs as its own consumer
// group, <app>-<stage>, with static membership (the instance id), so a
// restarted copy takes its partitions back at once. Every input partition of
// a stage is a task with its own slice of the stages' Pebble stores.
//
// # Exactly-once
//
// In ExactlyOnce mode (the default) each stage runs a loop of transactions,
// one per commit interval (CommitInterval, default 100ms) or record cap
// (MaxRecordsPerTransaction), on a franz-go GroupTransactSession with the
// transactional id <app>-<stage>-<instance>:
//
//  1. Poll at most the record cap with read_committed isolation.
//  2. Run the stage's operators on each record. A record's effects are
//     staged together: store writes, read back by its own later reads, and
//     output records. A record that fails (does not decode, the user's
//     function returns an error or panics, an output is too large) goes to
//     the stage's Policy and leaves none of its effects behind.
//  3. Store writes go to the task's indexed Pebble batch; the latest value of
//     each written key is produced to the store's changelog topic
//     (<app>-<store>-changelog, compacted, the task's own partition).
//  4. Flush, until half the transaction timeout after the transaction
//     began. Only if every produce succeeded, commit the consumed offsets in
//     the transaction (TxnOffsetCommit with the group's generation, KIP-447)
//     and commit the transaction. A flush that timed out, or whose retriable
//     errors outlived their retries (a broker failing over), aborts; once
//     the abort is confirmed the stage goes on as after step 6, without a
//     restart (StageMetrics.TransientAborts).
//  5. Committed: apply each task's batch together with its checkpoint (the
//     next changelog offset of each store) in one Pebble batch, before the
//     task runs again. Pebble never holds a write whose transaction did not
//     commit.
//  6. Aborted on purpose (a rebalance revoked partitions, a record failed
//     under the Fail policy): the batches are dropped and the consumer
//     rewinds to the committed offsets.
//  7. Anything else (EndTxn failed or timed out, the session ended
//     uncommitted without a rebalance) is an unknown outcome: the broker may
//     have committed. The stage drops every batch, closes its client, and
//     starts again with the same transactional id (whose InitProducerId
//     settles the pending transaction); every task is restored from its
//     checkpoint and the changelog, which tells the truth about what
//     committed.
//
// Downstream stages read repartition topics, and restores read changelogs,
// with read_committed: they only ever see committed data.
//
// # Recovery
//
// A task is restored when it is assigned, after the group fetched its
// committed offsets as stable (KIP-447: the fetch waits until a previous
// owner's pending transactional offset commit resolved) and before fetching
// starts (kgo.AdjustFetchOffsetsFn). The restore reads the task's
// checkpoint, and rebuilds the store from the changelog's start when there is
// none, when the changelog topic was recreated (its topic id differs), when the
// checkpoint lies below the log start offset or above the high watermark, or
// when it lies below the high watermark and is older than the changelog's
// delete.retention.ms (compaction may have removed tombstones since; 0 or an
// unreadable setting counts as always too old). Otherwise it replays only the
// changelog tail after the checkpoint. It first waits until no open
// transaction holds the changelog partition (last stable offset == high
// watermark): finishing at an offset an open transaction holds back could
// lose that transaction's state changes if it then commits. It never resets
// its position: records deleted under it (offset out of range) start it over
// from the new log start, and a restore that sees no record for a minute
// fails and is retried by the group. A changelog recreated while the group
// has committed input offsets is refused (*ChangelogRecreatedError) unless
// AllowChangelogRecreate.
//
// Unlike Kafka Streams under exactly-once, which wipes local RocksDB state
// after an unclean shutdown, a crash here costs only the replay of the
// changelog tail after the checkpoint: the checkpoint is written in the same
// Pebble batch as the data it describes.
//
// # Global tables
//
// A global table (stream.SourceGlobalTable) is a full copy of a topic, all
// partitions, that every instance keeps in its Pebble state and that any
// task may read. Run reads each global topic with read_committed up to its
// last stable offsets before any stage starts, resuming from the copy's
// checkpoints (one per source partition, applied in the same Pebble batch
// as the data) or, when checkpoint.Plan rejects them, wiping the copy and
// reading the topic from its start; then it follows the topic in the
// background with a direct consumer. The topic is the copy's changelog. A
// global table is eventually consistent with its topic, and exactly-once
// does not extend to it: a record processed again after a crash may be
// joined with a newer value of the table than the first time.
//
// # Shutdown
//
// When Run's context is done, each stage ends its open transaction
// (committing what it processed), applies it, and the processor leaves its
// consumer groups (unless RollingRestart), closes Pebble and returns nil.
package processor
