package processor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/stream"
)

// countStage returns the counting stage of the word count with one task on
// a fresh Pebble state, and its store's name.
func countStage(t *testing.T) (*stage, string) {
	t.Helper()
	st := benchStage(t, wordcount(t, "lines", "counts"), 1)
	if len(st.stores) != 1 {
		t.Fatalf("count stage has %d stores, want one", len(st.stores))
	}
	return st, st.stores[0].name
}

// scanAll returns "key=value" for every key of the task's store that Scan
// sees.
func scanAll(t *testing.T, tk *task, store string) []string {
	t.Helper()
	var got []string
	if err := tk.Scan(store, nil, nil, func(k, v []byte) error {
		got = append(got, fmt.Sprintf("%s=%s", k, v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestTaskWriteSet: a transaction's writes are seen by its reads and scans
// at once, reach Pebble only at apply with each key's latest value, whether
// or not a scan made the indexed batch, and vanish on reset.
func TestTaskWriteSet(t *testing.T) {
	// scans: 0, the transaction never scans (the plain batch at apply);
	// 1, it scans after its writes; 2, it scans in the middle of them too.
	for scans := range 3 {
		t.Run(fmt.Sprintf("scans=%d", scans), func(t *testing.T) {
			st, store := countStage(t)
			tk := st.mu.tasks[0]
			put := func(k, v string) {
				t.Helper()
				var val []byte
				if v != "" {
					val = []byte(v)
				}
				if err := tk.write(store, []byte(k), val); err != nil {
					t.Fatal(err)
				}
			}
			applied := func(k string) string {
				t.Helper()
				v, ok, err := st.db.Get(store, 0, []byte(k))
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					return "<none>"
				}
				return string(v)
			}

			// Committed state: a=1, b=1.
			put("a", "1")
			put("b", "1")
			if err := tk.apply(); err != nil {
				t.Fatal(err)
			}

			// Open transaction: a=2, then a=3, c=1, b deleted.
			put("a", "2")
			if scans == 2 {
				if got, want := scanAll(t, tk, store), []string{"a=2", "b=1"}; !slices.Equal(got, want) {
					t.Fatalf("scan mid-transaction: %v, want %v", got, want)
				}
			}
			put("a", "3")
			put("c", "1")
			put("b", "")
			if v, ok, err := tk.Get(store, []byte("a")); err != nil || !ok || string(v) != "3" {
				t.Fatalf("Get(a) in the transaction = %q, %v, %v; want 3", v, ok, err)
			}
			if _, ok, err := tk.Get(store, []byte("b")); err != nil || ok {
				t.Fatalf("Get(b) after its delete = %v, %v; want no value", ok, err)
			}
			if scans > 0 {
				if got, want := scanAll(t, tk, store), []string{"a=3", "c=1"}; !slices.Equal(got, want) {
					t.Fatalf("scan: %v, want %v", got, want)
				}
			}
			if got := applied("a") + applied("b") + applied("c"); got != "11<none>" {
				t.Fatalf("Pebble before apply holds a,b,c = %s; want 1, 1, none", got)
			}

			if err := tk.apply(); err != nil {
				t.Fatal(err)
			}
			if got := applied("a") + "," + applied("b") + "," + applied("c"); got != "3,<none>,1" {
				t.Fatalf("Pebble after apply holds a,b,c = %s; want 3, none, 1", got)
			}
			if _, ok, err := st.db.Checkpoint(tk.id); err != nil || !ok {
				t.Fatalf("no checkpoint after apply: %v, %v", ok, err)
			}

			// A reset transaction leaves nothing.
			put("a", "9")
			tk.reset()
			if v, _, _ := tk.Get(store, []byte("a")); string(v) != "3" {
				t.Fatalf("Get(a) after reset = %q, want 3", v)
			}
			if got := applied("a"); got != "3" {
				t.Fatalf("Pebble after reset holds a = %s, want 3", got)
			}
		})
	}
}

// upperInPlace upper-cases b's ASCII letters in place.
func upperInPlace(b []byte) []byte {
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return b
}

// failingCodec cannot encode anything.
type failingCodec struct{}

func (failingCodec) Encode([]byte) ([]byte, error) {
	return nil, errors.New("failingCodec cannot encode")
}
func (failingCodec) Decode(b []byte) ([]byte, error) { return b, nil }

// recordingProducer acknowledges every record and keeps it.
type recordingProducer struct{ recs []*kgo.Record }

func (p *recordingProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.recs = append(p.recs, r)
	if promise != nil {
		promise(r, nil)
	}
}

// TestDeadLetterKeepsTheFetchedBytes: a function may modify its codec.Bytes
// input in place; when a later operator fails, the dead-letter record still
// carries the key and value as they were fetched.
func TestDeadLetterKeepsTheFetchedBytes(t *testing.T) {
	bld := stream.NewBuilder()
	in := stream.Source(bld, "in", codec.Bytes{}, codec.Bytes{}, stream.Named("map"))
	up := stream.Map(in, func(k, v []byte) ([]byte, []byte) { return upperInPlace(k), upperInPlace(v) })
	stream.To(up, "out", codec.Bytes{}, codec.Codec[[]byte](failingCodec{}))
	topo, err := bld.Build()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(topo, Brokers("127.0.0.1:1"), ApplicationID("dlq"), StateDir(t.TempDir()), ErrorPolicy(DeadLetter))
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := p.stages[0]
	st.db = db
	st.mu.tasks[0] = newTask(st, 0, checkpoint.Checkpoint{})

	prod := &recordingProducer{}
	if err := st.process(prod, &kgo.Record{Topic: "in", Key: []byte("key"), Value: []byte("hello")}); err != nil {
		t.Fatalf("process under DeadLetter: %v", err)
	}
	if len(prod.recs) != 1 || prod.recs[0].Topic != p.cfg.dlq {
		t.Fatalf("produced %d records (%v), want one to %s", len(prod.recs), prod.recs, p.cfg.dlq)
	}
	if k, v := string(prod.recs[0].Key), string(prod.recs[0].Value); k != "key" || v != "hello" {
		t.Errorf("dead-letter record %q=%q, want the fetched key=hello", k, v)
	}
}

// TestTaskScanWithoutWrites: a scan or a get before any write of the
// transaction (a timer that only reads, say) reads Pebble and leaves no
// indexed batch behind, so the task stays clean and its next transaction
// starts fresh.
func TestTaskScanWithoutWrites(t *testing.T) {
	st, store := countStage(t)
	tk := st.mu.tasks[0]
	if err := tk.write(store, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := tk.apply(); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, tk, store); !slices.Equal(got, []string{"a=1"}) {
		t.Fatalf("scan = %v, want [a=1]", got)
	}
	if _, ok, err := tk.Get(store, []byte("missing")); err != nil || ok {
		t.Fatalf("Get(missing) = %v, %v", ok, err)
	}
	// A task that is not dirty is not in the stage's list of dirty tasks
	// either; if a read left a batch that made it look dirty, the stage
	// would never add it, and its next writes would be neither produced
	// to the changelog nor applied.
	if tk.txn != nil || tk.dirty() {
		t.Fatalf("after a scan without writes: indexed batch %v, dirty %v; want neither", tk.txn != nil, tk.dirty())
	}
	// The next transaction writes, scans and applies as usual.
	if err := tk.write(store, []byte("b"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, tk, store); !slices.Equal(got, []string{"a=1", "b=2"}) {
		t.Fatalf("scan after a write = %v, want [a=1 b=2]", got)
	}
	if err := tk.apply(); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := st.db.Get(store, 0, []byte("b")); err != nil || !ok || string(v) != "2" {
		t.Fatalf("Pebble holds b = %q, %v, %v; want 2", v, ok, err)
	}
}
