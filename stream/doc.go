// Package stream describes stream-processing topologies: typed sources,
// operators, state stores and sinks, validated and split into stages that the
// runtime (package processor) executes against Kafka. This package does no
// I/O. It is the API users compose topologies with, and part of sluice's
// stable API (with processor, streamtest, codec and sink); what the runtime
// needs of a built topology (its stages' topics, stores and compiled
// programs) is in sluice's internal/topology, out of the user's way.
//
// A topology is built with a Builder and the package's functions (Go methods
// cannot have type parameters, so every operator that may change types is a
// function):
//
//	b := stream.NewBuilder()
//	lines := stream.Source(b, "lines", codec.String{}, codec.String{}, stream.Named("read-lines"))
//	words := stream.FlatMap(lines, splitWords)
//	byWord := stream.GroupBy(words, func(_, w string) string { return w },
//		codec.String{}, codec.String{}, stream.Named("by-word"))
//	counts := stream.Count(byWord, stream.Named("counts"))
//	stream.To(counts.ToStream(), "word-counts", codec.String{}, codec.Int64Text{})
//	topo, err := b.Build()
//
// Generics stay at the edges. Every operator is compiled when it is declared
// into a typed closure that calls the closures of the operators downstream
// of it, so the per-record path neither boxes values nor uses reflection;
// bytes are decoded once where a stage reads a topic and encoded once where
// it writes a topic or a store.
//
// The operators, by kind (docs/dsl.md has an example of each):
//
//   - stateless: Map, MapValues, Filter, FilterNot, FlatMap, FlatMapValues,
//     SelectKey, Peek, Split (branches with a default), Merge, WithHeaders;
//   - re-keying: GroupBy, GroupByKey, Repartition (Partitions sets an
//     internal topic's partition count);
//   - aggregations: Count, Aggregate, Reduce on a Grouped stream;
//     TableAggregate, TableCount, TableReduce (with subtractors) on a
//     GroupedTable from TableGroupBy;
//   - tables: SourceTable (a compacted topic, tombstones delete), the
//     aggregations' results, TableFilter, TableMapValues, ToStream,
//     Changes, TableTo (deletions as tombstones);
//   - joins: Join and LeftJoin (stream-table), TableJoin and TableLeftJoin;
//     GlobalJoin and GlobalLeftJoin against a GlobalTable (SourceGlobalTable:
//     a full copy of a topic on every instance, no co-partitioning needed),
//     and Lookup in one from a Process function; StreamJoin,
//     StreamLeftJoin and StreamOuterJoin (stream-stream, Within a time
//     window);
//   - windows: WindowedBy with Tumbling, Hopping or Sessions, then
//     WindowedCount, WindowedReduce, WindowedAggregate, SessionAggregate;
//     SuppressUntilWindowCloses for final results;
//   - time: ExtractTimestamp (event time on a Source), Every (timers on
//     StreamTime or WallClock for Process and ProcessTo);
//   - loops: DeclareLoop, LoopTo;
//   - low-level: Process, ProcessTo.
//
// # Time
//
// A task's stream time is the largest timestamp of the records it has
// processed. Windows close, suppressed results are released, windowed and
// join buffers expire and stream-time timers fire as it passes their time,
// inside the record that moved it. A stage that needs it keeps it in a
// store of its own ("<stage>-stream-time"), written in the record's transaction
// and restored with the task's state, so a restarted task decides as the
// crashed one would have. An input record too late for its windows fails
// with ErrLateRecord, for the runtime's error policy; a record a stream-time
// hook emits that a downstream window or join finds late is dropped and
// counted instead. See Clock.
//
// # Tables
//
// A Table is a stream of changes: each update or deletion of a key flows
// downstream as a Change with the old and the new value. Operators that
// need old values (TableFilter, TableGroupBy, Changes) ask the tables
// upstream for them at declaration time, so tables nobody asks do not decode
// old values. SourceTable and the aggregations keep their tables in stores;
// TableFilter, TableMapValues and the table joins are views computed on
// lookup (see Table).
//
// For the goka-style low-level form, declare stores and outputs on the
// Builder (DeclareStore, DeclareOutput) and use them from a Process function
// through its Handle (Get, Put, Delete, Scan, Range, ScanPrefix, Emit). A
// Process must list what it uses (Uses, EmitsTo): Build rejects references it
// can check (zero or foreign ones), and at run time any other use returns an
// error wrapping ErrUndeclaredStore or ErrUndeclaredOutput. ProcessTo also
// forwards records to operators downstream.
//
// # Stages
//
// Build splits the topology into stages (Kafka Streams' sub-topologies): the
// sets of operators connected by streams, or by a shared store, without
// crossing a repartition topic. Each stage is one consumer group in the
// runtime, and each partition of its inputs one task. A stage reads its
// inputs, runs its operators, keeps its stores and writes its outputs; the
// only way data moves between stages is through topics. A stage with several
// inputs (processors on different sources sharing a store) needs them
// co-partitioned, which the runtime checks.
//
// Topology.Stages lists the stages upstream first, and Topology.String
// describes them. For the runtime, a stage compiles into one program per
// application id, which processes one input record (see Exactly-once).
//
// # Repartition topics
//
// Operators that need all records of a key in one task (Count, Aggregate,
// Reduce) take a Grouped stream. GroupBy, which sets a new key, writes the records to
// a repartition topic partitioned by the new key and reads them back in a new
// stage. GroupByKey does the same only when the key may have changed since
// the record was read (after Map, FlatMap or ProcessTo); otherwise the input
// topic is already partitioned by the key and no repartition is needed, as in
// Kafka Streams. Repartition writes a repartition topic explicitly (before a
// Join of a re-keyed stream, say), and TableGroupBy writes one carrying
// change envelopes (ChangeCodec). Repartition topics are internal: the
// application creates and owns them, and their physical name is
// "<app>-<name>-repartition". Loop topics are internal
// too: "<app>-<name>-loop".
//
// # Naming
//
// Stage names, store names and internal topic names come from Named. They are
// not labels: the runtime derives from them the stage's consumer group and
// transactional ids, the store's changelog topic ("<app>-<store>-changelog")
// and the repartition topic. Renaming one later silently
// loses committed offsets or state, as it does in Kafka Streams. Where no name
// is given, one is generated from the operator's kind and position (such as
// "count-3"), which changes when operators are added before it; the
// description (Topology.String) prints a WARNING line for every generated
// name that matters. Name sources, GroupBys, Counts and Aggregates.
//
// A stage is named after its first source: the Source's name, or, for a stage
// that reads a repartition topic, the name of the GroupBy that feeds it.
//
// # Validation
//
// DSL calls do not panic and return no errors: mistakes are recorded on the
// Builder, and Build reports all of them at once, joined with errors.Join,
// each wrapping a sentinel (ErrNoSource, ErrCycle, ErrNilCodec, ...) and
// saying what to change. Topology.Validate checks what depends on the
// application id.
//
// # Exactly-once
//
// A Program processes one input record. Its contract with the runtime is that
// a record's effects (store writes, emits) are applied all together or not at
// all: the Program makes them through the exec.Task as it goes, and the
// runtime commits them in one Kafka transaction together with the record's
// offset, or discards every one of them if the Program returns an error or
// panics, or if the transaction aborts. The Program itself keeps no state
// between records outside the stores, so replaying a record after an abort
// has the same effects as the first attempt, provided the user's functions
// are deterministic and free of side effects outside stores and outputs.
//
// Outputs carry the input record's timestamp and its headers, unless an
// operator set others (WithHeaders, Forwarder.ForwardHeaders). The
// aggregations emit the updated value downstream on every update.
//
// # Testing
//
// Package streamtest runs a built topology in memory with the stages'
// compiled Programs and the runtime's own per-record effect staging, without
// a broker.
//
// # Recovery
//
// Nothing in this package needs recovering: a compiled Program holds no state
// of its own. A task's state lives in its stores, which the runtime restores
// from their changelog topics before the task runs again, and a record whose
// transaction did not commit is processed again from the committed offsets.
//
// # Failure
//
// A key or value that does not decode makes the Program return a *CodecError
// that names the topic, partition and offset, and whether the key or the
// value failed; it matches codec.ErrDecode. Encode failures return a
// *CodecError too. An error returned by a Process function is returned
// wrapped with the processor's name. The runtime's error policy then decides
// whether the stage stops or skips the record.
//
// A panic in a user function is not recovered in this package: the runtime
// recovers it at the stage boundary and hands the record to the error policy.
//
// # Concurrency and memory
//
// A Program is called concurrently for different tasks, so user functions
// must be safe for concurrent use; keep state in stores.
//
// Keys and values handed to user functions never alias the runtime's buffers
// (for codec.Bytes, whose Decode returns its input, the Program decodes a
// copy), so they may be kept. A stream used by several operators hands each of
// them the same key and value: functions must not modify values of reference
// types (slices, maps, pointers) in place. Encoded outputs are handed to the
// runtime, which may keep them until the transaction ends: with codec.Bytes,
// do not modify an emitted slice afterwards.
package stream
