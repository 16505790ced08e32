package streamtest

import (
	"bytes"
	"sort"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// Global tables (stream.SourceGlobalTable) in the driver: one map per
// table, holding the latest value of every key of every partition of its
// topic. A record appended to the topic (piped, or emitted by a stage)
// updates the map at once, before anything else is processed; a tombstone
// deletes its key. The runtime follows the topic in the background instead,
// so there a lookup may see a change later (see stream.GlobalTable).

// globalTable is a global table's copy. It is the exec.ReadStore that stage
// Programs read it through.
type globalTable struct {
	spec topology.Global
	data map[string][]byte
}

var _ exec.ReadStore = (*globalTable)(nil)

// openGlobals sets up the topology's global tables and their topics.
func (d *Driver) openGlobals(view *topology.Topology, topicOf func(topology.TopicRef) *topic) {
	d.globals = map[string]*globalTable{}
	for _, spec := range view.Globals {
		g := &globalTable{spec: spec, data: map[string][]byte{}}
		d.globals[spec.Name] = g
		t := topicOf(topology.TopicRef{Name: spec.Topic})
		t.globals = append(t.globals, g)
	}
}

// read reports whether the topology reads t: a stage, or a global table.
func (t *topic) read() bool { return len(t.readers) > 0 || len(t.globals) > 0 }

// applyGlobals applies m, just appended to t, to the global tables that copy
// t.
func (d *Driver) applyGlobals(t *topic, m Message) {
	for _, g := range t.globals {
		if m.Value == nil {
			delete(g.data, string(m.Key))
		} else {
			g.data[string(m.Key)] = m.Value
		}
	}
}

// Global implements exec.GlobalTask: the task's Scope hands a Program the
// driver's global tables.
func (t *task) Global(name string) exec.ReadStore {
	if g := t.st.d.globals[name]; g != nil {
		return g
	}
	return nil
}

func (g *globalTable) Get(key []byte) ([]byte, bool, error) {
	v, ok := g.data[string(key)]
	return v, ok, nil
}

func (g *globalTable) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	for _, k := range g.keys() {
		if k < string(lower) || (upper != nil && k >= string(upper)) {
			continue
		}
		if err := fn([]byte(k), g.data[k]); err != nil {
			return err
		}
	}
	return nil
}

func (g *globalTable) keys() []string {
	keys := make([]string, 0, len(g.data))
	for k := range g.data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// GlobalTable is a typed, read-only view of a global table of the topology.
type GlobalTable[K, V any] struct {
	d  *Driver
	g  *globalTable
	kc codec.Codec[K]
	vc codec.Codec[V]
}

// OpenGlobalTable returns a view of the global table named name (as given
// with stream.Named to stream.SourceGlobalTable), decoding keys with kc and
// values with vc. It fails the test if the topology has no such global
// table.
func OpenGlobalTable[K, V any](d *Driver, name string, kc codec.Codec[K], vc codec.Codec[V]) *GlobalTable[K, V] {
	d.tb.Helper()
	g := d.globals[name]
	switch {
	case g == nil:
		d.fatalf("OpenGlobalTable: the topology has no global table %q", name)
		return nil
	case kc == nil || vc == nil:
		d.fatalf("OpenGlobalTable(%q): nil codec", name)
		return nil
	}
	return &GlobalTable[K, V]{d: d, g: g, kc: kc, vc: vc}
}

// Get returns the value of k. It fails the test if k does not encode or the
// value does not decode.
func (gt *GlobalTable[K, V]) Get(k K) (V, bool) {
	gt.d.tb.Helper()
	var zero V
	kb, err := gt.kc.Encode(k)
	if err != nil {
		gt.d.fatalf("global table %s: encoding key: %v", gt.g.spec.Name, err)
		return zero, false
	}
	vb, ok := gt.g.data[string(kb)]
	if !ok {
		return zero, false
	}
	return gt.decodeValue(vb), true
}

// All returns every entry of the global table, ordered by encoded key.
func (gt *GlobalTable[K, V]) All() []stream.KeyValue[K, V] {
	gt.d.tb.Helper()
	var kvs []stream.KeyValue[K, V]
	for _, kb := range gt.g.keys() {
		k, err := gt.kc.Decode([]byte(kb))
		if err != nil {
			gt.d.fatalf("global table %s: decoding key %q: %v", gt.g.spec.Name, kb, err)
		}
		kvs = append(kvs, stream.KeyValue[K, V]{Key: k, Value: gt.decodeValue(gt.g.data[kb])})
	}
	return kvs
}

// Len returns the number of keys the global table holds.
func (gt *GlobalTable[K, V]) Len() int { return len(gt.g.data) }

func (gt *GlobalTable[K, V]) decodeValue(vb []byte) V {
	gt.d.tb.Helper()
	v, err := gt.vc.Decode(bytes.Clone(vb))
	if err != nil {
		gt.d.fatalf("global table %s: decoding value: %v", gt.g.spec.Name, err)
	}
	return v
}
