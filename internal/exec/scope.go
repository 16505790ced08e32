package exec

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// ErrRecordTooLarge is wrapped by the error of an output or state change
// larger than the runtime's record size limit (processor.ErrRecordTooLarge is
// this error).
var ErrRecordTooLarge = errors.New("record too large")

// ErrNullKey is wrapped by the error of a store write (Put or Delete) whose
// key is null: nil or empty. Every store write reaches the store's
// changelog, a compacted topic, and a broker rejects a record without a key
// there (INVALID_RECORD), which would fail the whole transaction at flush,
// outside the error policy, and again after every restart. Failing the
// record that made the write lets the policy handle it alone.
//
// A key of zero bytes counts as null, whether nil or empty: codecs do not
// keep the difference (codec.Bytes decodes both to nil, codec.String encodes
// "" to no bytes), so a store could not tell them apart after a restore.
// stream.ErrNullKey is this error.
var ErrNullKey = errors.New("null key")

// Base is the task state that a Scope stages one record's effects over: the
// task's stores as the open transaction sees them. The runtime (package
// processor) implements it over its Pebble batch; the test driver (package
// streamtest) over in-memory maps. Sharing Scope is what makes the driver
// stage effects exactly as the runtime does.
type Base interface {
	// Partition is the task's partition number.
	Partition() int32
	// HasStore reports whether the task has a store with this name.
	HasStore(name string) bool
	// Get returns key's value in store as the open transaction sees it. The
	// returned slice must stay valid and unmodified while the record is
	// processed.
	Get(store string, key []byte) (value []byte, ok bool, err error)
	// Scan calls fn for every key of store in [lower, upper) in key order
	// (a nil upper: no upper bound), as the open transaction sees it.
	Scan(store string, lower, upper []byte, fn func(key, value []byte) error) error
}

// Scope collects one input record's effects: store writes (read back by the
// record's own later reads) and emitted records. They reach the task's batch
// and the producer only when the record succeeded (the caller applies
// Writes and Emits then), so a record handled by the error policy leaves no
// trace.
//
// A Scope is reused from record to record (Begin resets it); it is not safe
// for concurrent use.
type Scope struct {
	base     Base
	maxBytes int
	writes   []Write
	emits    []Output
	stores   map[string]*scopeStore
	err      error // the first effect error (too large, unknown store)
}

// Write is a staged store write. Key and Value belong to the write: the
// Scope copied them, or its caller handed them over (OwningStore), and
// nothing modifies them afterwards, so the runtime may keep them.
type Write struct {
	Store string
	Key   []byte
	Value []byte // nil: delete
}

var _ Task = (*Scope)(nil)

// Begin starts staging a new record over b, dropping the previous record's
// effects. Outputs and state changes larger than maxRecordBytes (see
// RecordSize) fail with an error wrapping ErrRecordTooLarge.
func (s *Scope) Begin(b Base, maxRecordBytes int) {
	s.base = b
	s.maxBytes = maxRecordBytes
	s.writes = s.writes[:0]
	s.emits = s.emits[:0]
	s.err = nil
}

// Writes returns the record's staged store writes in the order they were
// made. Valid until the next Begin.
func (s *Scope) Writes() []Write { return s.writes }

// Emits returns the record's staged outputs in the order they were emitted.
// Valid until the next Begin.
func (s *Scope) Emits() []Output { return s.emits }

// Err returns the first error an effect returned (an output or state change
// too large), even if the Program swallowed it: such a record must go to the
// error policy.
func (s *Scope) Err() error { return s.err }

// Partition implements Task.
func (s *Scope) Partition() int32 { return s.base.Partition() }

// Store implements Task.
func (s *Scope) Store(name string) Store {
	if !s.base.HasStore(name) {
		return nil
	}
	if s.stores == nil {
		s.stores = map[string]*scopeStore{}
	}
	ss, ok := s.stores[name]
	if !ok {
		ss = &scopeStore{s: s, name: name}
		s.stores[name] = ss
	}
	return ss
}

// Emit implements Task.
func (s *Scope) Emit(out Output) error {
	if n := RecordSize(out.Key, out.Value, out.Headers); n > s.maxBytes {
		err := fmt.Errorf("%w: output to %s is %d bytes, above the limit of %d (processor.MaxRecordBytes)", ErrRecordTooLarge, out.Topic, n, s.maxBytes)
		if s.err == nil {
			s.err = err
		}
		return err
	}
	s.emits = append(s.emits, out)
	return nil
}

// RecordSize approximates the bytes a record takes in a produce request.
func RecordSize(k, v []byte, hs []Header) int {
	n := len(k) + len(v) + 70 // record and batch overhead
	for _, h := range hs {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// lookup returns the record's own latest pending write of key in store.
func (s *Scope) lookup(store string, key []byte) (Write, bool) {
	for i := len(s.writes) - 1; i >= 0; i-- {
		w := s.writes[i]
		if w.Store == store && bytes.Equal(w.Key, key) {
			return w, true
		}
	}
	return Write{}, false
}

// OwningStore is a Store that can take a write's bytes over instead of
// copying them, which saves two allocations per write.
type OwningStore interface {
	Store
	// PutOwned is Put for a key and value that the caller hands over: the
	// Store (and the runtime after it) may keep them, so neither the
	// caller nor anyone it shared them with may modify them afterwards.
	// Pass only bytes made for this write, such as a codec's fresh
	// encoding.
	PutOwned(key, value []byte) error
}

var _ OwningStore = (*scopeStore)(nil)

// scopeStore is a store as one record sees it: its own writes over the
// base's view.
type scopeStore struct {
	s    *Scope
	name string
}

func (ss *scopeStore) Get(key []byte) ([]byte, bool, error) {
	if w, ok := ss.s.lookup(ss.name, key); ok {
		return w.Value, w.Value != nil, nil
	}
	return ss.s.base.Get(ss.name, key)
}

func (ss *scopeStore) Put(key, value []byte) error {
	if err := ss.check(key, value); err != nil {
		return err
	}
	if value == nil {
		value = []byte{} // nil means delete below
	}
	ss.s.writes = append(ss.s.writes, Write{Store: ss.name, Key: bytes.Clone(key), Value: bytes.Clone(value)})
	return nil
}

// PutOwned implements OwningStore.
func (ss *scopeStore) PutOwned(key, value []byte) error {
	if err := ss.check(key, value); err != nil {
		return err
	}
	if value == nil {
		value = []byte{} // nil means delete
	}
	ss.s.writes = append(ss.s.writes, Write{Store: ss.name, Key: key, Value: value})
	return nil
}

// check returns the error of a write of key and value that must fail the
// record: a null key, or a state change too large.
func (ss *scopeStore) check(key, value []byte) error {
	if len(key) == 0 {
		return ss.nullKey("Put")
	}
	if n := RecordSize(key, value, nil); n > ss.s.maxBytes {
		err := fmt.Errorf("%w: state change of store %s is %d bytes, above the limit of %d (processor.MaxRecordBytes)", ErrRecordTooLarge, ss.name, n, ss.s.maxBytes)
		if ss.s.err == nil {
			ss.s.err = err
		}
		return err
	}
	return nil
}

func (ss *scopeStore) Delete(key []byte) error {
	if len(key) == 0 {
		return ss.nullKey("Delete")
	}
	ss.s.writes = append(ss.s.writes, Write{Store: ss.name, Key: bytes.Clone(key)})
	return nil
}

// nullKey fails the record for a write with a null key (see ErrNullKey).
func (ss *scopeStore) nullKey(op string) error {
	err := fmt.Errorf("%w: %s on store %s with a key of no bytes; its changelog, a compacted topic, cannot hold a record without a key", ErrNullKey, op, ss.name)
	if ss.s.err == nil {
		ss.s.err = err
	}
	return err
}

func (ss *scopeStore) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	// Merge the record's own writes (latest per key, in range) with the
	// base's view.
	latest := map[string][]byte{}
	var keys []string
	for _, w := range ss.s.writes {
		if w.Store != ss.name || bytes.Compare(w.Key, lower) < 0 || (upper != nil && bytes.Compare(w.Key, upper) >= 0) {
			continue
		}
		if _, seen := latest[string(w.Key)]; !seen {
			keys = append(keys, string(w.Key))
		}
		latest[string(w.Key)] = w.Value
	}
	if len(keys) == 0 {
		return ss.s.base.Scan(ss.name, lower, upper, fn)
	}
	slices.Sort(keys)
	i := 0
	emitPending := func(before []byte) error {
		for i < len(keys) && (before == nil || keys[i] < string(before)) {
			if v := latest[keys[i]]; v != nil {
				if err := fn([]byte(keys[i]), v); err != nil {
					return err
				}
			}
			i++
		}
		return nil
	}
	err := ss.s.base.Scan(ss.name, lower, upper, func(k, v []byte) error {
		if err := emitPending(k); err != nil {
			return err
		}
		if i < len(keys) && keys[i] == string(k) {
			i++
			if nv := latest[string(k)]; nv != nil {
				return fn(k, nv)
			}
			return nil
		}
		return fn(k, v)
	})
	if err != nil {
		return err
	}
	return emitPending(nil)
}
