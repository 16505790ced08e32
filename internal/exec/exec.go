// Package exec is the contract between a compiled topology (package stream)
// and the runtime that executes it (package processor). The engine moves bytes:
// stream compiles the user's typed functions into a Program per stage, and the
// runtime hands that Program one input record at a time together with a Task
// that gives byte-level access to the task's stores and lets it emit records.
//
// Users never see this package.
package exec

import "time"

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one input record handed to a stage's Program.
//
// The runtime owns the memory: Key, Value and Headers are valid only during the
// Program call and must be copied if kept, unless Owned says otherwise.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
	// Owned says that the runtime never reuses or modifies Key and Value
	// and does not need them unchanged after the call, so a Program may
	// keep them, or hand them to user functions, without a copy. Headers
	// are still valid only during the call.
	Owned bool
}

// AnyPartition asks the runtime to choose the partition of an Output by
// hashing its key the way Kafka's default partitioner does (murmur2), so that
// a record with the same key always lands in the same partition.
const AnyPartition int32 = -1

// Output is a record a Program emits to a topic.
//
// The runtime may keep Key, Value and Headers until the transaction ends: a
// Program must not modify them after Emit returns.
type Output struct {
	Topic     string
	Partition int32 // AnyPartition, or an explicit partition
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time
}

// Store is byte-level access to one state store of the current task. Reads see
// every write made earlier in the same transaction (and in the same record).
//
// Returned slices are valid until the next call on the Store; copy them to keep
// them. Writes are not durable, nor visible to other tasks, until the
// transaction commits.
type Store interface {
	// Get returns the value of key, and false when the key has no value.
	Get(key []byte) (value []byte, ok bool, err error)
	// Put sets key to value.
	Put(key, value []byte) error
	// Delete removes key. Deleting a missing key is not an error.
	Delete(key []byte) error
	// Scan calls fn for every key in [lower, upper) in key order; a nil upper
	// means no upper bound. An error from fn stops the scan and is returned.
	Scan(lower, upper []byte, fn func(key, value []byte) error) error
}

// Task is the runtime's side of one task (a stage's input partition) while a
// Program processes one record.
type Task interface {
	// Partition is the task's partition number.
	Partition() int32
	// Store returns the store with the given name. The name is one of the
	// stage's declared stores (stream validates this when building); for any
	// other name Store returns nil.
	Store(name string) Store
	// Emit produces a record. It is visible to read_committed readers only
	// if the record's transaction commits.
	Emit(out Output) error
}

// Program processes one input record of a stage. An error (or a panic, which
// the runtime recovers) hands the record to the stage's error policy; the
// runtime then discards every store write and emit the record made, so a
// record's effects are all applied or none are. r itself is valid only during
// the call (the runtime reuses it).
type Program func(t Task, r *Record) error
