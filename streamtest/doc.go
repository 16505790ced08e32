// Package streamtest runs a topology in memory, synchronously, without a
// broker: a test driver in the spirit of Kafka Streams' TopologyTestDriver
// and goka's tester.
//
//	d := streamtest.New(t, topo, streamtest.Partitions(4))
//	lines := streamtest.NewInput(d, "lines", codec.String{}, codec.String{})
//	counts := streamtest.NewOutput(d, "word-counts", codec.String{}, codec.Int64Text{})
//	lines.Pipe("", "a b a")
//	got := streamtest.ReadTable(counts, nil) // map[a:2 b:1]
//	n, _ := streamtest.OpenStore(d, "counts", codec.String{}, codec.Int64{}).Get("a")
//
// Piping a record processes it at once, and then every record it caused in
// topics the topology reads (repartition topics, loop topics, user topics
// read by another stage), first in, first out, before Pipe returns.
//
// # Same code as the runtime
//
// The driver runs each stage's compiled Program (stream.Stage.Program), the
// code the runtime runs, and stages each record's effects with
// exec.Scope, the runtime's own per-record staging: a record's store writes
// and outputs are applied only when its Program returned nil and no effect
// failed (an output or state change over MaxRecordBytes), so a failing
// record leaves no effect, as in production. Records emitted with no
// explicit partition go to the partition Kafka's default partitioner picks:
// murmur2 of the key bytes (Partition), as the runtime's producer does.
// Partition counts follow the runtime's rules: internal topics take
// stream.Partitions or the count of the stage that writes them, and a
// stage's inputs must agree (New fails otherwise, like the runtime's start).
//
// What the driver does not model: transactions spanning several records
// (every record commits on its own, so there are no aborts or replays),
// changelogs and restores, rebalances, and concurrency between tasks. Records
// with a nil key go to partition 0.
//
// # Time
//
// A record piped without a timestamp gets the driver's wall clock
// (Driver.Now), which starts at StartTime and moves only with
// AdvanceWallClock. Each task keeps its stream time, the largest timestamp
// it has processed, in its stream-time store, as the runtime does (the
// stage's Program keeps it): windows, suppression, join buffers and
// stream-time timers follow it, record by record, as in production.
// AdvanceStreamTime moves it without a record (the runtime has no such
// call: use it to close a test's last windows), Driver.StreamTime reads it,
// and AdvanceWallClock fires the wall-clock timers, each task's through the
// same effect staging as a record (the runtime fires them once per cycle).
//
// # Failure
//
// Typed helpers (Pipe, Read, Get) fail the test on an error. Send and
// Driver.PipeMessage return it instead: every record that failed, as a
// *RecordError naming stage, topic, partition and offset (a panic is a
// *PanicError inside), joined. The driver goes on with the other queued
// records, as the runtime's Skip policy would.
package streamtest
