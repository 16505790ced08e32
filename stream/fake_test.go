package stream_test

import (
	"bytes"
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/sluicehq/sluice/internal/exec"
)

// fakeStore is a map-backed exec.Store.
type fakeStore struct{ m map[string][]byte }

func (s *fakeStore) Get(key []byte) ([]byte, bool, error) {
	v, ok := s.m[string(key)]
	return v, ok, nil
}

func (s *fakeStore) Put(key, value []byte) error {
	s.m[string(key)] = bytes.Clone(value)
	return nil
}

func (s *fakeStore) Delete(key []byte) error {
	delete(s.m, string(key))
	return nil
}

func (s *fakeStore) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		if k >= string(lower) && (upper == nil || k < string(upper)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), s.m[k]); err != nil {
			return err
		}
	}
	return nil
}

// fakeTask is an in-memory exec.Task: map-backed stores, recorded emits,
// and the operators' memory (exec.MemoryTask), which a new fakeTask starts
// without, as a restarted task does.
type fakeTask struct {
	partition int32
	stores    map[string]*fakeStore
	emits     []exec.Output
	emitErr   error // returned by Emit when set
	memo      map[any]any
}

func (t *fakeTask) Memory() map[any]any {
	if t.memo == nil {
		t.memo = map[any]any{}
	}
	return t.memo
}

func newTask(partition int32, stores ...string) *fakeTask {
	t := &fakeTask{partition: partition, stores: map[string]*fakeStore{}}
	for _, s := range stores {
		t.stores[s] = &fakeStore{m: map[string][]byte{}}
	}
	return t
}

func (t *fakeTask) Partition() int32 { return t.partition }

func (t *fakeTask) Store(name string) exec.Store {
	if s, ok := t.stores[name]; ok {
		return s
	}
	return nil
}

func (t *fakeTask) Emit(out exec.Output) error {
	if t.emitErr != nil {
		return t.emitErr
	}
	t.emits = append(t.emits, out)
	return nil
}

// take returns the emits so far and forgets them.
func (t *fakeTask) take() []exec.Output {
	out := t.emits
	t.emits = nil
	return out
}

var errEncode = errors.New("test: cannot encode")

// failCodec is a Codec[string] that fails on the value "bad": Decode with a
// plain error (not wrapping codec.ErrDecode), Encode with errEncode.
type failCodec struct{}

func (failCodec) Encode(v string) ([]byte, error) {
	if v == "bad" {
		return nil, errEncode
	}
	return []byte(v), nil
}

func (failCodec) Decode(b []byte) (string, error) {
	if string(b) == "bad" {
		return "", errors.New("test: bad bytes")
	}
	return string(b), nil
}

var ts = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(topic string, partition int32, offset int64, key, value string) *exec.Record {
	return &exec.Record{Topic: topic, Partition: partition, Offset: offset,
		Key: []byte(key), Value: []byte(value), Timestamp: ts.Add(time.Duration(offset) * time.Second)}
}

type kv struct{ topic, key, value string }

func kvs(outs []exec.Output) []kv {
	var r []kv
	for _, o := range outs {
		r = append(r, kv{o.Topic, string(o.Key), string(o.Value)})
	}
	return r
}

func equalKVs(a, b []kv) bool { return slices.Equal(a, b) }
