package state

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sluicehq/sluice/internal/checkpoint"
)

var (
	// ErrLocked is matched by the error Open returns when another process,
	// or another DB in this process, has the state directory open. The
	// error names the directory.
	ErrLocked = errors.New("state: state directory in use")
	// ErrClosed is matched by the error every method returns after
	// [DB.Close].
	ErrClosed = errors.New("state: DB is closed")
	// ErrDone is matched by the error a [Txn] or one of its [Store] views
	// returns when used after Txn.Apply or Txn.Discard, and by the error a
	// [Writer] returns after Writer.Discard.
	ErrDone = errors.New("state: transaction already applied or discarded")
)

// TaskID names a task: one input partition of one stage.
type TaskID struct {
	Stage     string
	Partition int32
}

// String returns "stage/partition".
func (t TaskID) String() string { return fmt.Sprintf("%s/%d", t.Stage, t.Partition) }

// DB is the local state of one processor instance: one Pebble database that
// holds the stores and checkpoints of all its tasks (see the key layout in
// the package documentation).
//
// A DB is safe for concurrent use, but Close must not run concurrently with
// any other use, and every Txn and Writer should be applied or discarded
// before Close.
type DB struct {
	dir       string
	cacheSize int64 // Pebble's block cache, in bytes
	pdb       *pebble.DB
	plock     *pebble.Lock
	// dirLock is the flock on sluice.lock, or nil when the DB is not on the
	// operating system's filesystem.
	dirLock io.Closer
	closed  atomic.Bool
}

// Open opens the state directory dir, creating it if needed.
//
// Only one DB may have a directory open at a time. If another process, or
// another DB in this process, has it open, Open returns an error matching
// [ErrLocked] that names the directory: stop the other process, or give this
// one another state directory. On the operating system's filesystem Open
// takes an exclusive flock on dir/sluice.lock as well as Pebble's LOCK file,
// because Pebble's lock (fcntl, plus a table of paths) does not stop this
// process from opening the same directory again through a symlink.
//
// Open uses Pebble's newest on-disk format. Local state is a cache of the
// changelog topics, so a binary with an older Pebble that cannot read it
// should wipe the directory and restore.
func Open(dir string, opts ...Opt) (*DB, error) {
	c := defaultCfg()
	for _, o := range opts {
		o.apply(&c)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := c.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: create state directory %s: %w", dir, err)
	}

	db := &DB{dir: dir, cacheSize: c.cacheSize}
	if db.cacheSize == 0 {
		db.cacheSize = defaultCacheSize
	}
	if c.fs == vfs.Default {
		l, err := lockDir(dir)
		if err != nil {
			return nil, err
		}
		db.dirLock = l
	}
	plock, err := pebble.LockDirectory(dir, c.fs)
	if err != nil {
		db.releaseDirLock()
		if isLockHeld(err) {
			return nil, lockedError(dir, err)
		}
		return nil, fmt.Errorf("state: lock state directory %s: %w", dir, err)
	}
	db.plock = plock

	popts := &pebble.Options{
		FS:                 c.fs,
		CacheSize:          c.cacheSize,
		Lock:               plock,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             c.logger,
		MemTableSize:       memTableSize,
	}
	// A stage reads every key before it writes it, and the first read of a
	// new key looks for it in every level; bloom filters stop that read at
	// the filters. The levels below L0 inherit L0's policy.
	popts.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		_ = plock.Close()
		db.releaseDirLock()
		return nil, fmt.Errorf("state: open Pebble in %s: %w", dir, err)
	}
	db.pdb = pdb
	return db, nil
}

// memTableSize is Pebble's memtable size: larger than Pebble's 4 MiB
// default, so that a busy stage flushes (and compacts) less often. Pebble
// keeps up to two memtables before it stalls writes.
const memTableSize = 32 << 20

func lockedError(dir string, cause error) error {
	return fmt.Errorf("%w: %s is open in another process (or another DB in this process); "+
		"stop that process or use another state directory: %w", ErrLocked, dir, cause)
}

// CacheSize returns the size in bytes of the DB's block cache (see
// [CacheSize]).
func (db *DB) CacheSize() int64 { return db.cacheSize }

func (db *DB) releaseDirLock() {
	if db.dirLock != nil {
		_ = db.dirLock.Close()
		db.dirLock = nil
	}
}

// Close closes Pebble and releases the directory locks. Writes applied with
// NoSync that the operating system has not written yet survive a process
// exit but not a machine crash; the changelog replay covers that (see
// Recovery in the package documentation).
//
// Calling Close again returns an error matching [ErrClosed].
func (db *DB) Close() error {
	if !db.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	err := db.pdb.Close()
	if lerr := db.plock.Close(); lerr != nil && err == nil {
		err = lerr
	}
	db.releaseDirLock()
	if err != nil {
		return fmt.Errorf("state: close %s: %w", db.dir, err)
	}
	return nil
}

// Checkpoint returns the checkpoint of task as last applied, and false when
// the task has none. A stored checkpoint that does not decode returns an
// error matching checkpoint.ErrCorrupt; the caller should then wipe the task
// and rebuild, as for a missing one.
func (db *DB) Checkpoint(task TaskID) (checkpoint.Checkpoint, bool, error) {
	if db.closed.Load() {
		return checkpoint.Checkpoint{}, false, ErrClosed
	}
	v, closer, err := db.pdb.Get(checkpointKey(task))
	if errors.Is(err, pebble.ErrNotFound) {
		return checkpoint.Checkpoint{}, false, nil
	}
	if err != nil {
		return checkpoint.Checkpoint{}, false, fmt.Errorf("state: read checkpoint of task %s: %w", task, err)
	}
	defer closer.Close()
	var cp checkpoint.Checkpoint
	if err := cp.UnmarshalBinary(v); err != nil {
		return checkpoint.Checkpoint{}, false, fmt.Errorf("state: checkpoint of task %s: %w", task, err)
	}
	return cp, true, nil
}

// Get returns a copy of the value that the DB holds for key in the store's
// partition, and false when the key has none. It reads what has been applied,
// not the open writes of any Txn.
func (db *DB) Get(store string, partition int32, key []byte) ([]byte, bool, error) {
	if db.closed.Load() {
		return nil, false, ErrClosed
	}
	k := append(appendDataPrefix(make([]byte, 0, 32+len(store)+len(key)), store, partition), key...)
	v, closer, err := db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: get from store %q partition %d: %w", store, partition, err)
	}
	c := make([]byte, len(v))
	copy(c, v)
	_ = closer.Close()
	return c, true, nil
}

// Wipe deletes the data of every named store in task's partition, and the
// task's checkpoint, in one Pebble batch: after a crash either all of it is
// gone or none. Other partitions and other stores are untouched. Wipe does
// not wait for the write to reach the disk (see Recovery in the package
// documentation for why that is safe).
func (db *DB) Wipe(task TaskID, stores []string) error {
	if db.closed.Load() {
		return ErrClosed
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	var prefix []byte
	for _, s := range stores {
		prefix = appendDataPrefix(prefix[:0], s, task.Partition)
		if err := b.DeleteRange(prefix, prefixEnd(prefix), nil); err != nil {
			return fmt.Errorf("state: wipe store %q of task %s: %w", s, task, err)
		}
	}
	if err := b.Delete(checkpointKey(task), nil); err != nil {
		return fmt.Errorf("state: wipe checkpoint of task %s: %w", task, err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: wipe task %s: %w", task, err)
	}
	return nil
}

// Metrics returns Pebble's metrics of the state directory (disk usage,
// compactions, read amplification, ...), or nil once the DB is closed. The
// caller owns the result.
func (db *DB) Metrics() *pebble.Metrics {
	if db.closed.Load() {
		return nil
	}
	return db.pdb.Metrics()
}
