// Package streamtest runs a topology in memory, synchronously, without a
// broker: a test driver in the spirit of Kafka Streams' TopologyTestDriver
// and goka's tester. Users import it from their tests; it is part of
// sluice's stable API (see package stream), and it gives a topology the
// partition counts and the errors (RecordError, stream.TimerError) that the
// runtime would, from the same code.
//
//	d := streamtest.New(t, topo, streamtest.Partitions(4))
//	lines := streamtest.NewInput(d, "lines", codec.String{}, codec.String{})
//	counts := streamtest.NewOutput(d, "word-counts", codec.String{}, codec.Int64Text{})
//	lines.Pipe("", "a b a")
//	got := streamtest.ReadTable(counts, nil) // map[a:2 b:1]
//	n, _ := streamtest.OpenStore(d, "counts", codec.String{}, codec.Int64{}).Get("a")
//
// Piping a record processes it, and every record it caused in topics the
// topology reads (repartition topics, loop topics, user topics read by
// another stage), before Pipe returns. Records piped inside Driver.Batch
// are processed together when the batch ends (see Cycles).
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
// What the driver does not model: aborts and replays (no transaction
// fails), changelogs and restores, rebalances, concurrency between tasks,
// and the runtime's cap on the records of one cycle
// (processor.MaxRecordsPerTransaction). A record piped with a nil key,
// which a Kafka producer would spread over the partitions, goes to
// partition 0. The DSL never writes a nil key to a topic it reads back:
// GroupBy, GroupByKey and TableGroupBy fail a record whose group key
// encodes to no bytes (stream.ErrNullKey), and Repartition writes such a
// key as an empty key, which the runtime's producer hashes like any other
// (Partition), so driver and runtime agree on its partition.
//
// # Cycles
//
// The driver processes records in cycles, as the runtime's transaction
// loop does. A cycle of a stage processes, task by task in partition
// order, every record its task can read and has not processed; what the
// cycle emits becomes readable when it ends (the runtime's commit), so a
// record written to a repartition or loop topic is processed in a later
// cycle than the one that wrote it, after the other records that were
// waiting with its cause. Cycles run stage by stage, upstream first, until
// no record is left.
//
// Within a task, the next record is the one with the lowest timestamp among
// the first unprocessed records of the task's input topics (each partition
// keeps its offset order, so a record waits behind an earlier-offset one
// with a later timestamp), as in the runtime and in Kafka Streams; a tie
// goes to the record appended first (piped, or emitted, earlier).
//
// Outside Driver.Batch each piped record is processed, with everything it
// causes, before the next one is piped: as in the runtime when records
// arrive one cycle apart. Records that reach the runtime together (a
// backlog, a restart, a burst) are processed together there, with effects
// the one-by-one order hides: a record of one input is processed before an
// earlier-piped record of another input if its timestamp is lower (a
// stream-table join may find the table row, or miss it), a loop or
// repartition record comes after records piped later than its cause, and
// a repartitioned stream reaches each downstream task in whole batches, one
// per upstream task, so its stream time jumps and a record that the
// one-by-one order accepts may be late for a window. Pipe such records in
// one Batch to test them as the runtime would see them.
//
// # Time
//
// A record piped without a timestamp gets the driver's wall clock
// (Driver.Now), which starts at StartTime and moves only with
// AdvanceWallClock. Each task keeps its stream time, the largest timestamp
// it has processed, in its stream-time store, as the runtime does (the
// stage's Program keeps it): windows, suppression, join buffers and
// stream-time timers follow it with every record the task processes, in
// the order of its cycles (see Cycles); records piped one by one reach a
// downstream task in pipe order, which production does not promise: use
// Batch to see the jumps of a repartitioned stream's time.
// AdvanceStreamTime moves it without a record (the runtime has no such
// call: use it to close a test's last windows), Driver.StreamTime reads it,
// and AdvanceWallClock fires the wall-clock timers, each stage's in one
// cycle, each task's through the same effect staging as a record (the
// runtime fires them once per cycle).
//
// # Failure
//
// Typed helpers (Pipe, Read, Get) fail the test on an error. Send and
// Driver.PipeMessage return it instead: every record that failed, as a
// *RecordError naming stage, topic, partition and offset (a panic is a
// *PanicError inside), joined; Driver.Batch returns those of its records.
// The driver goes on with the other records, as the runtime's Skip policy
// would.
package streamtest
