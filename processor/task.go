package processor

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/state"
)

// task is one input partition of a stage: its stores, its checkpoint and the
// write batch of the open transaction.
type task struct {
	id state.TaskID
	st *stage

	// lastCommit is when a committed cycle last changed the task (Unix
	// ns), for Processor.Tasks.
	lastCommit atomic.Int64

	// cp is the checkpoint as applied in Pebble.
	cp checkpoint.Checkpoint

	// changelog holds, per store, the latest value of every key written in
	// the open transaction (nil value: deleted), with the key's bytes for
	// the changelog record. It is the transaction's
	// write set: only the latest value of a key needs to reach the
	// changelog, and Pebble, since the transaction commits as a whole.
	// INVARIANT: it reaches Pebble only after the Kafka transaction
	// committed (apply).
	changelog map[string]map[string]written

	// txn is an indexed batch holding the write set, made only when the
	// open transaction scans a store (a scan must see the transaction's
	// writes in key order); from then on every write goes to it as well.
	// A transaction that never scans writes its set once per key, at
	// apply, in a plain batch.
	txn    *state.Txn
	views  map[string]*state.Store
	memo   map[any]any      // exec.MemoryTask: the operators' memory of this task instance
	inputs map[string]int64 // input topic -> next offset processed in the open transaction

	// topics are the input topics whose partition the group assigned to
	// this task (normally all of the stage's inputs). Guarded by the
	// stage's mu.
	topics map[string]bool
	// start holds, per input topic, the absolute offset consumption
	// started at when the group had no commit for the partition (see
	// stage.resolveStarts); fence commits it while nothing else is known.
	start map[string]kgo.EpochOffset

	// cache holds, per store, applied values of keys the task read or wrote
	// lately (nil: the key has no value), so that a read-modify-write of a
	// key the open batch does not hold skips a Pebble lookup. cacheBytes
	// approximates its size; it is bounded by readCacheBytes.
	// INVARIANT: an entry equals what Pebble holds for the key. Entries come
	// only from Pebble reads of keys the transaction did not write and from the
	// task's own applied batches, and nothing else writes the task's keys
	// while the task lives (restores run before a task exists).
	cache      map[string]map[string][]byte
	cacheBytes int

	// sorted is applyWrites' buffer for a store's write set in key order.
	sorted []written

	// clNext is, per store, the next changelog offset after the records this
	// transaction produced; set by produce promises.
	clMu   sync.Mutex
	clNext map[string]int64

	// wallPrev is the wall-clock time up to which the task's wall-clock
	// timers have fired in committed transactions (its start at first);
	// wallNext the time the open transaction fired them up to (zero: it
	// did not). apply moves wallPrev to wallNext; reset forgets wallNext,
	// so timers whose transaction aborted fire again.
	wallPrev, wallNext time.Time

	mu struct {
		sync.Mutex
		// closed is set when the task was revoked or replaced by a new
		// restore; a closed task's batch is never applied.
		closed bool
	}
}

func newTask(st *stage, partition int32, cp checkpoint.Checkpoint) *task {
	return &task{
		id:        state.TaskID{Stage: st.name, Partition: partition},
		st:        st,
		cp:        cp,
		views:     map[string]*state.Store{},
		inputs:    map[string]int64{},
		topics:    map[string]bool{},
		start:     map[string]kgo.EpochOffset{},
		changelog: map[string]map[string]written{},
		cache:     map[string]map[string][]byte{},
		clNext:    map[string]int64{},
		wallPrev:  st.p.now(),
	}
}

// view returns the indexed view of store in the open transaction, making the
// indexed batch, with the write set in it, if needed.
func (t *task) view(store string) (*state.Store, error) {
	if v, ok := t.views[store]; ok {
		return v, nil
	}
	if t.txn == nil {
		t.txn = t.st.db.NewTxn()
		for s, kv := range t.changelog {
			v := t.txn.Store(s, t.id.Partition)
			t.views[s] = v
			for _, w := range kv {
				if err := putOrDelete(v, w.key, w.value); err != nil {
					t.dropTxn() // never apply a batch with part of the write set
					return nil, err
				}
			}
		}
		if v, ok := t.views[store]; ok {
			return v, nil
		}
	}
	v := t.txn.Store(store, t.id.Partition)
	t.views[store] = v
	return v, nil
}

// written is the open transaction's latest write of a key.
type written struct {
	key   []byte
	value []byte // nil: deleted
}

// write notes the open transaction's write of key in store (nil value:
// delete). Neither key nor value may be modified afterwards, by anyone: the
// write set, the changelog records and the read cache keep them.
func (t *task) write(store string, key, value []byte) error {
	m := t.changelog[store]
	if m == nil {
		m = map[string]written{}
		t.changelog[store] = m
	}
	// The map's key shares key's bytes rather than copying them: the
	// write set owns them (see above), and a copy per record was one of
	// the per-record path's allocations.
	m[unsafe.String(unsafe.SliceData(key), len(key))] = written{key, value}
	if t.txn == nil {
		return nil
	}
	v, err := t.view(store)
	if err == nil {
		err = putOrDelete(v, key, value)
	}
	if err != nil {
		t.dropTxn() // never apply a batch without the whole write set
	}
	return err
}

// dropTxn discards the indexed batch; the write set stays, and a later scan
// or apply starts from it again.
func (t *task) dropTxn() {
	if t.txn != nil {
		t.txn.Discard()
		t.txn = nil
	}
	clear(t.views)
}

// putOrDelete writes key's value, nil meaning a delete, to s.
func putOrDelete(s interface {
	Put(key, value []byte) error
	Delete(key []byte) error
}, key, value []byte) error {
	if value == nil {
		return s.Delete(key)
	}
	return s.Put(key, value)
}

// dirty reports whether the open transaction touched the task.
func (t *task) dirty() bool { return len(t.changelog) > 0 || len(t.inputs) > 0 }

// noteChangelog records the offset of a produced changelog record.
func (t *task) noteChangelog(store string, offset int64) {
	t.clMu.Lock()
	if offset+1 > t.clNext[store] {
		t.clNext[store] = offset + 1
	}
	t.clMu.Unlock()
}

// apply writes the committed transaction's batch together with the task's new
// checkpoint in one Pebble batch, unless the task was closed in the meantime
// (then a restore replays the changelog instead).
func (t *task) apply() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.reset()
	if t.mu.closed {
		return nil
	}
	if !t.wallNext.IsZero() {
		t.wallPrev = t.wallNext
	}
	t.lastCommit.Store(time.Now().UnixNano())
	cp := checkpoint.Checkpoint{
		Stores:  make(map[string]checkpoint.Store, len(t.st.stores)),
		Inputs:  make(map[string]int64, len(t.inputs)),
		Written: t.cp.Written,
	}
	for k, v := range t.cp.Stores {
		cp.Stores[k] = v
	}
	for k, v := range t.cp.Inputs {
		cp.Inputs[k] = v
	}
	for k, v := range t.inputs {
		cp.Inputs[k] = v
	}
	t.clMu.Lock()
	for store, next := range t.clNext {
		s := cp.Stores[store]
		// The topic id stays the one the task's restore read: the
		// stage's start-time id may be older (a changelog recreated
		// since), and writing it back would make the next restore
		// refuse, or rebuild, again.
		s.Next = next
		cp.Stores[store] = s
	}
	t.clMu.Unlock()
	if len(t.changelog) == 0 {
		// Nothing written: the checkpoint's input offsets are for
		// information only, so skip a Pebble write per idle commit.
		t.cp.Inputs = cp.Inputs
		return nil
	}
	// The time the transaction began to end, not now: the checkpoint
	// may not look younger than the changelog records it covers.
	cp.Written = t.st.endingAt
	if cp.Written.IsZero() {
		cp.Written = t.st.p.now()
	}
	if err := t.applyWrites(cp); err != nil {
		t.dropCache() // the batch may or may not be in Pebble
		return fmt.Errorf("task %s/%d: applying committed batch: %w", t.id.Stage, t.id.Partition, err)
	}
	t.cp = cp
	for store, kv := range t.changelog {
		for k, e := range kv {
			t.cachePut(store, k, e.value)
		}
	}
	return nil
}

// applyWrites writes the transaction's write set and cp in one Pebble batch:
// the indexed batch if a scan made one (it holds the set already), else a
// plain batch.
func (t *task) applyWrites(cp checkpoint.Checkpoint) error {
	if t.txn != nil {
		txn := t.txn
		t.txn = nil
		if err := txn.SetCheckpoint(t.id, cp); err != nil {
			txn.Discard()
			return err
		}
		return txn.Apply()
	}
	w := t.st.db.NewWriter()
	defer w.Discard()
	defer func() { clear(t.sorted[:cap(t.sorted)]) }() // keep no key or value alive
	for store, kv := range t.changelog {
		// In key order: Pebble inserts a batch into its memtable (a
		// skiplist) in the batch's order, remembering where the last
		// key went, so sorted keys cost far less to insert than the
		// map's random order. Each key is in the set once, so the order
		// changes nothing else.
		sorted := t.sorted[:0]
		for _, e := range kv {
			sorted = append(sorted, e)
		}
		t.sorted = sorted
		slices.SortFunc(sorted, func(a, b written) int { return bytes.Compare(a.key, b.key) })
		for _, e := range sorted {
			var err error
			if e.value == nil {
				err = w.Delete(store, t.id.Partition, e.key)
			} else {
				err = w.Put(store, t.id.Partition, e.key, e.value)
			}
			if err != nil {
				return err
			}
		}
	}
	if err := w.SetCheckpoint(t.id, cp); err != nil {
		return err
	}
	return w.Apply()
}

// readCacheBytes bounds a task's read cache.
const readCacheBytes = 8 << 20

// cached returns the applied value of key in store if the cache holds it.
func (t *task) cached(store string, key []byte) (value []byte, ok bool) {
	m := t.cache[store]
	if m == nil {
		return nil, false
	}
	value, ok = m[string(key)]
	return value, ok
}

// cachePut notes the applied value of key (nil: no value). value must not be
// modified afterwards.
func (t *task) cachePut(store, key string, value []byte) {
	m := t.cache[store]
	if m == nil {
		m = map[string][]byte{}
		t.cache[store] = m
	}
	if old, ok := m[key]; ok {
		t.cacheBytes -= len(old)
	} else {
		t.cacheBytes += len(key) + 48 // map entry overhead, roughly
	}
	m[key] = value
	t.cacheBytes += len(value)
	if t.cacheBytes > readCacheBytes {
		// Evict about a quarter, at random (map iteration order).
		for _, m := range t.cache {
			for k, v := range m {
				if t.cacheBytes <= readCacheBytes*3/4 {
					return
				}
				t.cacheBytes -= len(k) + 48 + len(v)
				delete(m, k)
			}
		}
	}
}

func (t *task) dropCache() {
	clear(t.cache)
	t.cacheBytes = 0
}

// reset drops the open transaction's batch and bookkeeping.
func (t *task) reset() {
	t.dropTxn()
	clear(t.inputs)
	clear(t.changelog)
	t.wallNext = time.Time{}
	t.clMu.Lock()
	clear(t.clNext)
	t.clMu.Unlock()
}

// close marks the task closed and drops its open batch. Safe to call from any
// goroutine once the stage loop no longer uses the task's batch, or under the
// stage's apply lock.
func (t *task) close() {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.Unlock()
}

// isClosed reports whether the task was closed.
func (t *task) isClosed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.closed
}

// The task is the base a record's effects are staged over (exec.Scope): the
// open transaction's view of its stores.
var _ exec.Base = (*task)(nil)

// Partition implements exec.Base.
func (t *task) Partition() int32 { return t.id.Partition }

// HasStore implements exec.Base.
func (t *task) HasStore(name string) bool {
	_, ok := t.st.storeByName[name]
	return ok
}

// Get implements exec.Base: the open transaction's latest write of key, else
// the applied value (from the read cache or Pebble).
func (t *task) Get(store string, key []byte) ([]byte, bool, error) {
	if e, ok := t.changelog[store][string(key)]; ok {
		return e.value, e.value != nil, nil
	}
	// The transaction did not write key, so Pebble's applied value is the
	// answer.
	if v, ok := t.cached(store, key); ok {
		return v, v != nil, nil
	}
	v, ok, err := t.st.db.Get(store, t.id.Partition, key)
	if err != nil {
		return nil, false, err
	}
	if ok && v == nil {
		v = []byte{}
	}
	t.cachePut(store, string(key), v)
	return v, ok, nil
}

// Scan implements exec.Base. It sees the open transaction's writes, through
// the indexed batch it makes on the first scan after a write; before any
// write it reads Pebble.
func (t *task) Scan(store string, lower, upper []byte, fn func(key, value []byte) error) error {
	if t.txn == nil && len(t.changelog) == 0 {
		return t.st.db.Scan(store, t.id.Partition, lower, upper, fn)
	}
	v, err := t.view(store)
	if err != nil {
		return err
	}
	return v.Scan(lower, upper, fn)
}

// Memory implements exec.MemoryTask. A task is made anew whenever its state
// is built (newTask: an assignment, a restart), so its memory starts empty
// then.
func (t *task) Memory() map[any]any {
	if t.memo == nil {
		t.memo = map[any]any{}
	}
	return t.memo
}
