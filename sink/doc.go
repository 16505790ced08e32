// Package sink gets Kafka records into a system outside Kafka exactly once,
// the way the Kafka documentation describes: the consumer's position is
// stored in the same place, and in the same transaction, as the data
// produced from it. Users import it (and a Sink such as package sqlsink)
// into their sink binaries; it is part of sluice's stable API (see package
// stream).
//
// A Sink (package sqlsink has one for SQL databases) stores a Batch of
// records together with, per input partition, the offsets the batch covers.
// A Runner consumes the input topics with a consumer group and hands it
// those batches:
//
//	r, err := sink.New(s,
//		sink.Brokers("localhost:9092"),
//		sink.ApplicationID("payments"),
//		sink.Topics("payments"),
//	)
//	if err != nil { ... }
//	err = r.Run(ctx) // until ctx is done
//
// Start more copies with the same application id and Kafka spreads the
// partitions over them (consumer group <app>-<name>).
//
// # Exactly-once
//
// The sink's offsets are the truth about what was consumed; the consumer
// group's committed offsets play no part (auto-commit is off; with
// CommitToKafka the runner commits copies for monitoring, and never reads
// them back). Each cycle:
//
//  1. Poll, with read_committed isolation, for the commit interval
//     (CommitInterval, default 100ms) or up to MaxRecordsPerBatch records.
//     The first non-empty poll blocks the group's rebalances
//     (kgo.BlockRebalanceOnPoll).
//  2. Build the batch: the records, and for each partition a Range from the
//     offset the sink stores (From, with the topic id stored with it) to one
//     past the last record (To, with the topic's id now).
//  3. Write: the sink stores the records and moves each partition's
//     position from (From, FromTopicID) to (To, TopicID) in ONE transaction
//     of its own. The update is a compare-and-set; if the stored position is
//     not (From, FromTopicID), the sink changes nothing and returns
//     ErrFenced.
//  4. Allow rebalances again (kgo.Client.AllowRebalance).
//
// So a record's effect and its offset are stored together or not at all,
// and no two batches can both store the same offsets.
//
// # Rebalances
//
// With BlockRebalanceOnPoll, franz-go runs the OnPartitionsRevoked and
// OnPartitionsLost callbacks only when the runner allows rebalances, which
// it does after the cycle's write has returned. So a revoke waits for the
// batch in flight to be committed, or to fail, and a batch holding records
// of a revoked partition is never written after the revoke returns. The
// next owner reads the partition's offset from the sink only after that
// (cooperative and eager rebalances both revoke before they reassign), so
// it starts exactly where the committed batch ended. When a rebalance is
// waiting, the runner cuts the batch's polling short
// (OnPartitionsCallbackBlocked) so that the revoke waits only for the
// write. The price: the commit interval plus the write, every attempt of it,
// must fit in the rebalance timeout: New checks CommitInterval +
// WriteAttempts × WriteTimeout (+ the pauses between attempts) against
// RebalanceTimeout, and fails naming the options to change.
//
// # Zombies
//
// A process paused (a long GC, a stopped VM, SIGSTOP) past its session
// timeout is removed from the group without revoking anything: the group
// does not wait for it. Its partitions go to another member, which reads
// their offsets from the sink and writes batches of its own. When the old
// process resumes, it still holds a batch. Its write starts from the offset
// it read before the pause, which the new owner has moved on: the
// compare-and-set fails, the sink rolls back and returns ErrFenced, and the
// runner drops the batch, closes its client without committing anything and
// rejoins the group, where it gets partitions (and their offsets from the
// sink) anew. If the zombie's write happens to come first, the new owner's
// first write is the one fenced instead; either way each offset range is
// stored once.
//
// A process paused inside its write, after its compare-and-set and before
// its commit, holds the sink's lock on the partition's offset (in
// PostgreSQL, the row lock of its UPDATE) until it resumes or its
// connection dies. A sink must not make the new owner wait for it until the
// write times out (that would be retried, then returned from Run, on every
// restart until the paused process dies). Package sqlsink waits at most
// sqlsink.LockTimeout for a lock and then returns ErrFenced: the runner
// drops the batch and rejoins, and does so again until the paused writer
// commits (its batch stands, and the next owner resumes after it) or rolls
// back.
//
// # Recovery
//
// Nothing is kept locally. After a crash, a restart, a fenced write or a
// rebalance, every assigned partition starts at the offset the sink stored,
// set in kgo.AdjustFetchOffsetsFn, which franz-go calls after the assignment
// and before it fetches; a partition the sink has no offset for starts at
// StartOffset. A Write whose outcome is unknown (an error from the commit)
// is retried with the same batch: if the first attempt committed, the retry
// is fenced and the runner rejoins, reading the offsets that did commit.
//
// Before it resumes a partition, the runner checks the stored position
// against the topic as the broker describes it now:
//
//   - The sink stores the topic's id (KIP-516) with each offset. A topic
//     deleted and created again under the same name has a new id, and the
//     stored offset says nothing about it (an offset of 100 would skip the
//     new topic's first 100 records, or lie beyond its end). Run returns a
//     *PositionError wrapping ErrTopicRecreated that says so; with
//     RestartRecreatedTopics the partition starts at the new topic's
//     beginning instead, and the first batch replaces the old position.
//   - An offset above the high watermark of the same topic means Kafka lost
//     records the sink already has (or the offsets came from another
//     cluster): Run returns a *PositionError wrapping ErrOffsetAboveEnd
//     that names the partition and the fix (set or delete the stored
//     offset). An offset stored without a topic id (by an earlier version
//     of the sink) above the high watermark gets the same error, which then
//     points to RestartRecreatedTopics, since a recreated topic is the
//     likely cause; such an offset within the topic is trusted, and the
//     next write stores the topic's id with it.
//   - An offset below the log start offset (retention deleted records the
//     sink never got) goes on at StartOffset; those records are lost to
//     the sink.
//
// A topic recreated while the runner consumes it is caught too: franz-go
// keeps fetching the old topic id and reports UNKNOWN_TOPIC_ID, and a
// record below the stored offset means franz-go reset the position. Either
// way the runner drops the batch and rejoins, and the checks above decide.
// No record is dropped silently.
//
// # Limits
//
// The guarantee covers what the Sink writes inside its transaction. The
// sink's own isolation level decides what concurrent readers and writers of
// the same rows see (see package sqlsink). Records are read with
// read_committed, so only committed Kafka transactions reach the sink.
// Offsets are per consumer group: renaming the application or the sink
// starts afresh and writes everything again.
package sink
