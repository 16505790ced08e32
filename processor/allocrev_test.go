package processor

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/stream"
)

// snapProducer keeps every produced record with a copy of its bytes taken
// when it was produced, to find records whose bytes changed afterwards.
type snapProducer struct {
	seen  map[*kgo.Record]bool
	recs  []*kgo.Record
	snaps []kgo.Record
	off   int64
}

func (p *snapProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	if p.seen == nil {
		p.seen = map[*kgo.Record]bool{}
	}
	if p.seen[r] {
		panic("record produced twice")
	}
	p.seen[r] = true
	p.recs = append(p.recs, r)
	p.snaps = append(p.snaps, kgo.Record{Topic: r.Topic, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)})
	r.Offset = p.off
	p.off++
	if promise != nil {
		promise(r, nil)
	}
}

func (p *snapProducer) check(t *testing.T) {
	t.Helper()
	for i, r := range p.recs {
		s := p.snaps[i]
		if r.Topic != s.Topic || !bytes.Equal(r.Key, s.Key) || !bytes.Equal(r.Value, s.Value) {
			t.Fatalf("produced record %d changed after Produce: %s %q=%q, was %s %q=%q", i, r.Topic, r.Key, r.Value, s.Topic, s.Key, s.Value)
		}
	}
}

// The stateful path (Count: PutOwned writes, arena outputs, chunked
// records, unsafe write-set keys, sorted apply, read cache) over cycles that
// commit or abort at random: no produced record's bytes change after
// Produce, and Pebble, the read cache and the committed changelog agree with
// a model of the counts.
func TestAllocrevCountCyclesCommitOrAbort(t *testing.T) {
	st := benchStage(t, wordcount(t, "lines", "counts"), 1)
	store := st.stores[0].name
	tk := st.mu.tasks[0]
	prod := &snapProducer{}
	rng := rand.New(rand.NewPCG(1, 2))
	committed, open := map[string]int64{}, map[string]int64{}
	changelog := map[string]string{} // latest committed changelog value per key
	cycleStart := 0
	for i := range 8000 {
		w := "w" + strconv.Itoa(rng.IntN(300))
		r := &kgo.Record{Topic: "bench-by-word-repartition", Key: []byte(w), Value: []byte(w), Offset: int64(i)}
		if err := st.process(prod, r); err != nil {
			t.Fatal(err)
		}
		if _, ok := open[w]; !ok {
			open[w] = committed[w]
		}
		open[w]++
		if rng.IntN(40) == 0 {
			st.produceChangelogs(prod)
			if rng.IntN(3) == 0 {
				st.discardDirty()
			} else {
				for j := cycleStart; j < len(prod.recs); j++ {
					if r := prod.recs[j]; r.Topic == st.stores[0].topic {
						changelog[string(r.Key)] = string(r.Value)
					}
				}
				if err := st.applyDirty(); err != nil {
					t.Fatal(err)
				}
				for k, v := range open {
					committed[k] = v
				}
			}
			clear(open)
			cycleStart = len(prod.recs)
			prod.check(t)
		}
	}
	prod.check(t)
	for k, n := range committed {
		want, _ := codec.Int64{}.Encode(n)
		v, ok, err := st.db.Get(store, 0, []byte(k))
		if err != nil || !ok || !bytes.Equal(v, want) {
			t.Fatalf("Pebble %s = %x, %v, %v; want %d", k, v, ok, err, n)
		}
		if c, ok := tk.cached(store, []byte(k)); ok && !bytes.Equal(c, want) {
			t.Fatalf("cache %s = %x, want %d", k, c, n)
		}
		if changelog[k] != string(want) {
			t.Fatalf("changelog %s = %x, want %d", k, changelog[k], n)
		}
	}
}

// The same with a Process stage writing through stream.Put with fresh
// codecs and emitting, reading back its own writes within a record and
// across records.
func TestAllocrevProcessPutCycles(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.DeclareStore(b, "kv", codec.String{}, codec.String{})
	in := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("p"))
	out := stream.DeclareOutput(b, "out", codec.String{}, codec.Int64Text{})
	stream.Process(in, func(h *stream.Handle, r stream.Record[string, string]) error {
		prev, _, err := stream.Get(h, s, r.Key)
		if err != nil {
			return err
		}
		nv := prev + r.Value
		if len(nv) > 50 {
			nv = r.Value
		}
		if err := stream.Put(h, s, r.Key, nv); err != nil {
			return err
		}
		if err := stream.Put(h, s, "last", r.Key); err != nil {
			return err
		}
		got, _, err := stream.Get(h, s, r.Key)
		if err != nil || got != nv {
			return fmt.Errorf("read own write %q, want %q (%v)", got, nv, err)
		}
		return stream.Emit(h, out, r.Key, int64(len(nv)))
	}, stream.Uses(s), stream.EmitsTo(out))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(topo, Brokers("127.0.0.1:1"), ApplicationID("arev"), StateDir(t.TempDir()))
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
	prod := &snapProducer{}
	rng := rand.New(rand.NewPCG(3, 4))
	committed, open := map[string]string{}, map[string]string{}
	get := func(k string) string {
		if v, ok := open[k]; ok {
			return v
		}
		return committed[k]
	}
	for i := range 8000 {
		k, v := "k"+strconv.Itoa(rng.IntN(200)), string(rune('a'+rng.IntN(26)))
		r := &kgo.Record{Topic: "in", Key: []byte(k), Value: []byte(v), Offset: int64(i)}
		if err := st.process(prod, r); err != nil {
			t.Fatal(err)
		}
		nv := get(k) + v
		if len(nv) > 50 {
			nv = v
		}
		open[k], open["last"] = nv, k
		if rng.IntN(30) == 0 {
			st.produceChangelogs(prod)
			if rng.IntN(3) == 0 {
				st.discardDirty()
			} else {
				if err := st.applyDirty(); err != nil {
					t.Fatal(err)
				}
				for k, v := range open {
					committed[k] = v
				}
			}
			clear(open)
			prod.check(t)
		}
	}
	prod.check(t)
	for k, want := range committed {
		v, ok, err := st.db.Get("kv", 0, []byte(k))
		if err != nil || !ok || string(v) != want {
			t.Fatalf("Pebble %s = %q, %v, %v; want %q", k, v, ok, err, want)
		}
	}
}
