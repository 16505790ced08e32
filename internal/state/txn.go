package state

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/sluicehq/sluice/internal/checkpoint"
)

// Txn buffers the state changes of one transaction of the runtime, for any
// number of tasks, in an indexed Pebble batch. Reads through its stores see
// the Txn's own writes merged over what the DB has applied. Nothing reaches
// the DB until Apply, and then everything does, checkpoints included, in one
// Pebble batch.
//
// A Txn is not safe for concurrent use. Every Txn must end with Apply or
// Discard; `defer t.Discard()` is always safe.
type Txn struct {
	db *DB
	// b is the indexed batch, nil once Apply or Discard ended the Txn.
	b      *pebble.Batch
	stores map[storeID]*Store
}

type storeID struct {
	name      string
	partition int32
}

// NewTxn starts a transaction. On a closed DB it returns a Txn whose every
// method fails with [ErrClosed].
func (db *DB) NewTxn() *Txn {
	t := &Txn{db: db}
	if !db.closed.Load() {
		t.b = db.pdb.NewIndexedBatch()
	}
	return t
}

// check returns the error for using t after it ended or after the DB closed.
func (t *Txn) check() error {
	if t.db.closed.Load() {
		return ErrClosed
	}
	if t.b == nil {
		return ErrDone
	}
	return nil
}

// Store returns the view of the store name's partition within t. Calling it
// again with the same name and partition returns the same *Store. The view
// is valid until t ends; after that its methods return [ErrDone].
func (t *Txn) Store(name string, partition int32) *Store {
	id := storeID{name, partition}
	if s, ok := t.stores[id]; ok {
		return s
	}
	if t.stores == nil {
		t.stores = make(map[storeID]*Store)
	}
	s := &Store{t: t, name: name, partition: partition}
	s.buf = appendDataPrefix(make([]byte, 0, 64), name, partition)
	s.plen = len(s.buf)
	t.stores[id] = s
	return s
}

// SetCheckpoint records task's checkpoint in t. Apply writes it in the same
// Pebble batch as t's data, so after a crash the DB holds both or neither.
// A second call for the same task replaces the first.
func (t *Txn) SetCheckpoint(task TaskID, cp checkpoint.Checkpoint) error {
	if err := t.check(); err != nil {
		return err
	}
	v, err := cp.MarshalBinary()
	if err != nil {
		return fmt.Errorf("state: encode checkpoint of task %s: %w", task, err)
	}
	if err := t.b.Set(checkpointKey(task), v, nil); err != nil {
		return fmt.Errorf("state: set checkpoint of task %s: %w", task, err)
	}
	return nil
}

// Empty reports whether t holds no writes, deletes or checkpoints (also true
// once t ended).
func (t *Txn) Empty() bool {
	return t.b == nil || t.b.Empty()
}

// Apply writes all of t's changes, data and checkpoints, to the DB in one
// Pebble batch, then ends t. It does not wait for the write to reach the
// disk (pebble.NoSync): the checkpoint rides in the same batch as the data,
// so a crash that loses the tail of the write-ahead log loses data and
// checkpoint together, and costs only a longer changelog replay.
//
// t is ended whether or not Apply succeeds. An error means the batch may or
// may not be in the DB; the caller must then restore the affected tasks from
// their checkpoints (which are consistent with the data either way).
func (t *Txn) Apply() error {
	if err := t.check(); err != nil {
		return err
	}
	b := t.b
	t.end()
	defer b.Close()
	if b.Empty() {
		return nil
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: apply transaction: %w", err)
	}
	return nil
}

// Discard drops all of t's changes and ends it. It is safe to call after
// Apply or more than once; then it does nothing.
func (t *Txn) Discard() {
	if t.b == nil {
		return
	}
	b := t.b
	t.end()
	if !t.db.closed.Load() {
		_ = b.Close()
	}
}

// end marks t ended. The Store views stay allocated but fail with ErrDone.
func (t *Txn) end() {
	t.b = nil
	t.stores = nil
}

// Store is the byte-level view of one partition of one state store within a
// [Txn]. It implements the runtime's store interface (internal/exec.Store).
//
// Reads see the Txn's earlier writes merged over what the DB has applied.
// Slices returned by Get, and passed to Scan's callback, are valid until the
// next call on the Store; copy them to keep them. Arguments are never kept:
// the caller may reuse them as soon as a method returns.
//
// A Store is not safe for concurrent use, and neither are two Stores of one
// Txn.
type Store struct {
	t         *Txn
	name      string
	partition int32
	// buf holds the key prefix in buf[:plen] and, after it, the user key of
	// the current call, so Get, Put and Delete build keys without
	// allocating.
	buf  []byte
	plen int
	// val holds the last value Get returned.
	val []byte
}

// Name returns the store's name.
func (s *Store) Name() string { return s.name }

// Partition returns the store's partition.
func (s *Store) Partition() int32 { return s.partition }

// key returns the full Pebble key of user key k, in s.buf.
func (s *Store) key(k []byte) []byte {
	s.buf = append(s.buf[:s.plen], k...)
	return s.buf
}

// Get returns the value of key, and false when key has no value. The value
// is valid until the next call on s.
func (s *Store) Get(key []byte) ([]byte, bool, error) {
	if err := s.t.check(); err != nil {
		return nil, false, err
	}
	v, closer, err := s.t.b.Get(s.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get from store %q partition %d: %w", s.name, s.partition, err)
	}
	s.val = append(s.val[:0], v...)
	_ = closer.Close()
	return s.val, true, nil
}

// Put sets key to value in the Txn.
func (s *Store) Put(key, value []byte) error {
	if err := s.t.check(); err != nil {
		return err
	}
	if err := s.t.b.Set(s.key(key), value, nil); err != nil {
		return fmt.Errorf("state: put to store %q partition %d: %w", s.name, s.partition, err)
	}
	return nil
}

// Delete removes key in the Txn. Deleting a missing key is not an error.
func (s *Store) Delete(key []byte) error {
	if err := s.t.check(); err != nil {
		return err
	}
	if err := s.t.b.Delete(s.key(key), nil); err != nil {
		return fmt.Errorf("state: delete from store %q partition %d: %w", s.name, s.partition, err)
	}
	return nil
}

// Scan calls fn for every key in [lower, upper) of this store partition, in
// key order; a nil lower means from the first key, a nil upper means to the
// last. fn receives user keys (without the internal prefix); key and value
// are valid only until fn returns. An error from fn stops the scan and is
// returned as is.
//
// fn may call Get, Put and Delete on any Store of the Txn; the scan does not
// see writes made after it started. A panic in fn propagates to the caller
// after the scan's iterator was closed.
func (s *Store) Scan(lower, upper []byte, fn func(key, value []byte) error) (err error) {
	if err := s.t.check(); err != nil {
		return err
	}
	if upper != nil && bytes.Compare(lower, upper) >= 0 {
		return nil
	}
	prefix := s.buf[:s.plen]
	// The bounds must stay unchanged while the iterator lives, so they get
	// their own memory rather than s.buf (which fn's calls may rewrite).
	bounds := make([]byte, 0, 2*s.plen+len(lower)+len(upper)+1)
	bounds = append(append(bounds, prefix...), lower...)
	lo := bounds[:len(bounds):len(bounds)]
	var hi []byte
	if upper == nil {
		hi = appendPrefixEnd(bounds[len(bounds):], prefix)
	} else {
		hi = append(append(bounds[len(bounds):], prefix...), upper...)
	}

	it, err := s.t.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("state: scan store %q partition %d: %w", s.name, s.partition, err)
	}
	// INVARIANT: the iterator is closed however the scan ends, a panic in
	// fn included (the Skip and DeadLetter policies recover from it and go
	// on): an open iterator pins memtables and sstables for good.
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("state: scan store %q partition %d: %w", s.name, s.partition, cerr)
		}
	}()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: scan store %q partition %d: %w", s.name, s.partition, err)
		}
		if err := fn(it.Key()[s.plen:], v); err != nil {
			return err
		}
	}
	return nil
}
