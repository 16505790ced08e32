package state

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Global tables (stream.SourceGlobalTable) keep a full copy of a topic on
// every instance. Their data and checkpoints live in the same Pebble DB as
// the tasks', under a reserved store name:
//
//	data:       0x01 | uvarint(len(name)) | name | 0xffffffff (GlobalPartition) | user key
//	checkpoint: 0x02 | uvarint(len(name)) | name | source partition (4 bytes, big-endian)
//
// where name is GlobalStore(table) = "global:" + table. Every partition of
// the topic is merged into one key range (partition -1), so a lookup is one
// Pebble read whatever partition the key was written to; each partition of
// the topic has its own checkpoint key (the next offset of that partition).
// ':' is in no store or stage name (names are ASCII letters, digits, '.', '_'
// and '-'; package stream enforces it), so these keys never meet a task's.

// GlobalPartition is the partition number of a global table's data range.
const GlobalPartition int32 = -1

// GlobalStore returns the reserved store name of the global table named
// table: "global:" + table.
func GlobalStore(table string) string { return "global:" + table }

// GlobalCheckpoint returns the TaskID under which the checkpoint of the
// given source partition of global table table is kept (see DB.Checkpoint,
// Writer.SetCheckpoint).
func GlobalCheckpoint(table string, partition int32) TaskID {
	return TaskID{Stage: GlobalStore(table), Partition: partition}
}

// GlobalReader reads the applied state of one global table, outside any
// transaction. It is safe for concurrent use: every call reads what Pebble
// holds at that moment (a concurrent Writer.Apply is atomic, so a read sees
// a batch entirely or not at all).
type GlobalReader struct {
	db     *DB
	table  string
	prefix []byte
}

// Global returns a reader of global table table's data.
func (db *DB) Global(table string) *GlobalReader {
	return &GlobalReader{db: db, table: table, prefix: appendDataPrefix(nil, GlobalStore(table), GlobalPartition)}
}

// Get returns a copy of key's value, and false when the key has none.
func (g *GlobalReader) Get(key []byte) ([]byte, bool, error) {
	if g.db.closed.Load() {
		return nil, false, ErrClosed
	}
	k := make([]byte, 0, len(g.prefix)+len(key))
	k = append(append(k, g.prefix...), key...)
	v, closer, err := g.db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get from global table %q: %w", g.table, err)
	}
	c := make([]byte, len(v))
	copy(c, v)
	_ = closer.Close()
	return c, true, nil
}

// Scan calls fn for every key in [lower, upper) in key order (a nil upper:
// to the end). key and value are valid only until fn returns. An error from
// fn stops the scan and is returned as is; a panic in fn propagates after the
// scan's iterator was closed.
func (g *GlobalReader) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	return g.db.scan(g.prefix, lower, upper, fn, fmt.Sprintf("global table %q", g.table))
}

// Scan calls fn for every key in [lower, upper) of the store's partition as
// the DB holds it (not the open writes of any Txn), in key order; a nil
// upper means to the end. key and value are valid only until fn returns. An
// error from fn stops the scan and is returned as is; a panic in fn
// propagates after the scan's iterator was closed.
func (db *DB) Scan(store string, partition int32, lower, upper []byte, fn func(key, value []byte) error) error {
	return db.scan(appendDataPrefix(nil, store, partition), lower, upper, fn, fmt.Sprintf("store %q partition %d", store, partition))
}

// scan iterates the keys [prefix+lower, prefix+upper) and hands fn the keys
// without the prefix; what names the range in errors.
func (db *DB) scan(prefix, lower, upper []byte, fn func(key, value []byte) error, what string) (err error) {
	if db.closed.Load() {
		return ErrClosed
	}
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return nil
	}
	lo := append(bytes.Clone(prefix), lower...)
	var hi []byte
	if upper == nil {
		hi = prefixEnd(prefix)
	} else {
		hi = append(bytes.Clone(prefix), upper...)
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("state: scan %s: %w", what, err)
	}
	// INVARIANT: the iterator is closed however the scan ends, a panic in
	// fn included: an open iterator pins memtables and sstables for good.
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("state: scan %s: %w", what, cerr)
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: scan %s: %w", what, err)
		}
		if err := fn(it.Key()[len(prefix):], v); err != nil {
			return err
		}
	}
	return nil
}

// WipeGlobal deletes global table table's data and the checkpoints of all
// its partitions, in one Pebble batch (without waiting for the disk, as
// Wipe).
func (db *DB) WipeGlobal(table string) error {
	if db.closed.Load() {
		return ErrClosed
	}
	name := GlobalStore(table)
	b := db.pdb.NewBatch()
	defer b.Close()
	data := appendDataPrefix(nil, name, GlobalPartition)
	if err := b.DeleteRange(data, prefixEnd(data), nil); err != nil {
		return fmt.Errorf("state: wipe global table %q: %w", table, err)
	}
	// Every checkpoint key of the table: the checkpoint key without its
	// partition is their common prefix.
	cps := checkpointKey(TaskID{Stage: name})
	cps = cps[:len(cps)-4]
	if err := b.DeleteRange(cps, prefixEnd(cps), nil); err != nil {
		return fmt.Errorf("state: wipe checkpoints of global table %q: %w", table, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: wipe global table %q: %w", table, err)
	}
	return nil
}
