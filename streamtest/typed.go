package streamtest

import (
	"bytes"
	"sort"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
)

// Record is a typed record of a topic.
type Record[K, V any] struct {
	Key   K
	Value V
	// Tombstone marks a record with a null value (Value is then the zero
	// value): a deletion for a table. Piping one deletes the key from a
	// SourceTable.
	Tombstone bool
	// Timestamp is the record's timestamp. Piping a record with a zero
	// Timestamp gives it the driver's wall clock (Driver.Now).
	Timestamp time.Time
	Headers   stream.Headers
	// Partition and Offset say where the record is in its topic (ignored
	// when piping: the partition comes from the key's hash).
	Partition int32
	Offset    int64
}

// Input pipes typed records into a topic the topology reads.
type Input[K, V any] struct {
	d     *Driver
	topic string
	kc    codec.Codec[K]
	vc    codec.Codec[V]
}

// NewInput returns an Input for topic (a physical name), encoding keys with
// kc and values with vc, normally the codecs the topology reads the topic
// with. It fails the test if the topology does not read topic.
func NewInput[K, V any](d *Driver, topic string, kc codec.Codec[K], vc codec.Codec[V]) *Input[K, V] {
	d.tb.Helper()
	t := d.topics[topic]
	switch {
	case t == nil:
		d.fatalf("NewInput: %q is not a topic of the topology (its topics: %s)", topic, d.topicNames())
	case !t.read():
		d.fatalf("NewInput: topic %q is not read by the topology", topic)
	case kc == nil || vc == nil:
		d.fatalf("NewInput(%q): nil codec", topic)
	}
	return &Input[K, V]{d: d, topic: topic, kc: kc, vc: vc}
}

// Pipe pipes a record with key k and value v, timestamped with the driver's
// wall clock, and processes it and all it causes (see Driver.PipeMessage).
// It fails the test if any record fails; use Send to get the error instead.
func (in *Input[K, V]) Pipe(k K, v V) {
	in.d.tb.Helper()
	in.must(in.Send(Record[K, V]{Key: k, Value: v}))
}

// PipeAt is Pipe with the record timestamped ts.
func (in *Input[K, V]) PipeAt(ts time.Time, k K, v V) {
	in.d.tb.Helper()
	in.must(in.Send(Record[K, V]{Key: k, Value: v, Timestamp: ts}))
}

// PipeTombstone pipes a record with key k and a null value.
func (in *Input[K, V]) PipeTombstone(k K) {
	in.d.tb.Helper()
	in.must(in.Send(Record[K, V]{Key: k, Tombstone: true}))
}

// PipeRecord pipes r (with its headers and timestamp).
func (in *Input[K, V]) PipeRecord(r Record[K, V]) {
	in.d.tb.Helper()
	in.must(in.Send(r))
}

func (in *Input[K, V]) must(err error) {
	in.d.tb.Helper()
	if err != nil {
		in.d.fatalf("piping into %s: %v", in.topic, err)
	}
}

// Send pipes r like PipeRecord and returns what failed: an encoding error,
// or the *RecordError of every record (the piped one or one it caused)
// whose processing failed and left no effect, joined. Inside Driver.Batch
// the record is processed when the batch ends, and Batch returns its
// failures.
func (in *Input[K, V]) Send(r Record[K, V]) error {
	kb, err := in.kc.Encode(r.Key)
	if err != nil {
		return err
	}
	var vb []byte
	if !r.Tombstone {
		if vb, err = in.vc.Encode(r.Value); err != nil {
			return err
		}
		if vb == nil {
			vb = []byte{} // a value, not a tombstone
		}
	}
	return in.d.PipeMessage(in.topic, Message{Key: kb, Value: vb, Headers: r.Headers, Timestamp: r.Timestamp})
}

// Output reads typed records from a topic the topology writes (or any topic
// of the topology). Each Output reads from the start of the topic, in the
// order records were appended, and remembers how far it has read.
type Output[K, V any] struct {
	d     *Driver
	topic string
	kd    codec.Codec[K]
	vd    codec.Codec[V]
	next  int
}

// NewOutput returns an Output for topic (a physical name; internal topics
// are "<app>-<name>-repartition"), decoding keys with kc and values with vc.
// It fails the test if topic is not a topic of the topology.
func NewOutput[K, V any](d *Driver, topic string, kc codec.Codec[K], vc codec.Codec[V]) *Output[K, V] {
	d.tb.Helper()
	if d.topics[topic] == nil {
		d.fatalf("NewOutput: %q is not a topic of the topology (its topics: %s)", topic, d.topicNames())
	}
	if kc == nil || vc == nil {
		d.fatalf("NewOutput(%q): nil codec", topic)
	}
	return &Output[K, V]{d: d, topic: topic, kd: kc, vd: vc}
}

// Read returns the next record, and false when there is none. It fails the
// test if the record does not decode.
func (o *Output[K, V]) Read() (Record[K, V], bool) {
	o.d.tb.Helper()
	msgs := o.d.topics[o.topic].msgs
	if o.next >= len(msgs) {
		return Record[K, V]{}, false
	}
	m := msgs[o.next]
	o.next++
	r := Record[K, V]{Headers: m.Headers, Timestamp: m.Timestamp, Partition: m.Partition, Offset: m.Offset}
	var err error
	if r.Key, err = o.kd.Decode(bytes.Clone(m.Key)); err != nil {
		o.d.fatalf("decoding key of %s/%d@%d: %v", o.topic, m.Partition, m.Offset, err)
	}
	if m.Value == nil {
		r.Tombstone = true
	} else if r.Value, err = o.vd.Decode(bytes.Clone(m.Value)); err != nil {
		o.d.fatalf("decoding value of %s/%d@%d: %v", o.topic, m.Partition, m.Offset, err)
	}
	return r, true
}

// ReadAll returns every record not read yet.
func (o *Output[K, V]) ReadAll() []Record[K, V] {
	o.d.tb.Helper()
	var rs []Record[K, V]
	for {
		r, ok := o.Read()
		if !ok {
			return rs
		}
		rs = append(rs, r)
	}
}

// ReadKeyValues returns the key and value of every record not read yet. It
// fails the test on a tombstone, which a KeyValue cannot express: read
// topics with tombstones with ReadAll or ReadTable.
func (o *Output[K, V]) ReadKeyValues() []stream.KeyValue[K, V] {
	o.d.tb.Helper()
	var kvs []stream.KeyValue[K, V]
	for _, r := range o.ReadAll() {
		if r.Tombstone {
			o.d.fatalf("ReadKeyValues: %s/%d@%d is a tombstone; use ReadAll or ReadTable", o.topic, r.Partition, r.Offset)
		}
		kvs = append(kvs, stream.KeyValue[K, V]{Key: r.Key, Value: r.Value})
	}
	return kvs
}

// ReadValues returns the value of every record not read yet, skipping
// tombstones.
func (o *Output[K, V]) ReadValues() []V {
	o.d.tb.Helper()
	var vs []V
	for _, r := range o.ReadAll() {
		if !r.Tombstone {
			vs = append(vs, r.Value)
		}
	}
	return vs
}

// ReadTable reads every record of o not read yet as a compacted topic would
// keep them: the latest value per key, a tombstone deleting its key. It
// applies them to m (a new map when m is nil) and returns it, so a test can
// follow a table across reads.
func ReadTable[K comparable, V any](o *Output[K, V], m map[K]V) map[K]V {
	o.d.tb.Helper()
	if m == nil {
		m = map[K]V{}
	}
	for _, r := range o.ReadAll() {
		if r.Tombstone {
			delete(m, r.Key)
		} else {
			m[r.Key] = r.Value
		}
	}
	return m
}

// Store is a typed, read-only view of a state store of the topology, across
// all its tasks.
type Store[K, V any] struct {
	d    *Driver
	st   *stage
	name string
	kc   codec.Codec[K]
	vc   codec.Codec[V]
}

// Entry is a store entry and the partition (task) that holds it.
type Entry[K, V any] struct {
	Partition int32
	Key       K
	Value     V
}

// OpenStore returns a view of the store named name (as given with
// stream.Named or stream.DeclareStore), decoding keys with kc and values
// with vc. It fails the test if the topology has no such store.
func OpenStore[K, V any](d *Driver, name string, kc codec.Codec[K], vc codec.Codec[V]) *Store[K, V] {
	d.tb.Helper()
	for _, st := range d.stages {
		if st.stores[name] {
			if kc == nil || vc == nil {
				d.fatalf("OpenStore(%q): nil codec", name)
			}
			return &Store[K, V]{d: d, st: st, name: name, kc: kc, vc: vc}
		}
	}
	d.fatalf("OpenStore: the topology has no store %q", name)
	return nil
}

// Get returns the committed value of k: from the task (partition) that
// holds it, the lowest-numbered one if several do. It fails the test if k
// does not encode or the value does not decode.
func (s *Store[K, V]) Get(k K) (V, bool) {
	s.d.tb.Helper()
	var zero V
	kb, err := s.kc.Encode(k)
	if err != nil {
		s.d.fatalf("store %s: encoding key: %v", s.name, err)
		return zero, false
	}
	for _, p := range s.partitions() {
		if vb, ok := s.st.tasks[p].stores[s.name][string(kb)]; ok {
			return s.decodeValue(p, vb), true
		}
	}
	return zero, false
}

// All returns every entry of the store, ordered by partition and then by
// encoded key.
func (s *Store[K, V]) All() []Entry[K, V] {
	s.d.tb.Helper()
	var es []Entry[K, V]
	for _, p := range s.partitions() {
		m := s.st.tasks[p].stores[s.name]
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, kb := range keys {
			k, err := s.kc.Decode([]byte(kb))
			if err != nil {
				s.d.fatalf("store %s, partition %d: decoding key %q: %v", s.name, p, kb, err)
			}
			es = append(es, Entry[K, V]{Partition: p, Key: k, Value: s.decodeValue(p, m[kb])})
		}
	}
	return es
}

// Len returns the number of entries of the store, across partitions.
func (s *Store[K, V]) Len() int {
	n := 0
	for _, t := range s.st.tasks {
		n += len(t.stores[s.name])
	}
	return n
}

func (s *Store[K, V]) decodeValue(p int32, vb []byte) V {
	s.d.tb.Helper()
	v, err := s.vc.Decode(bytes.Clone(vb))
	if err != nil {
		s.d.fatalf("store %s, partition %d: decoding value: %v", s.name, p, err)
	}
	return v
}

func (s *Store[K, V]) partitions() []int32 {
	ps := make([]int32, 0, len(s.st.tasks))
	for p := range s.st.tasks {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}
