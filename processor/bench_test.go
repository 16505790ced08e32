package processor

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/stream"
)

// discardProducer acknowledges every record at once, with increasing
// offsets, so that benchmarks measure the stage's own per-record path.
type discardProducer struct{ offset int64 }

func (d *discardProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	r.Offset = d.offset
	d.offset++
	if promise != nil {
		promise(r, nil)
	}
}

// benchStage returns stage i of topo with one task (partition 0) on a fresh
// Pebble state, as Run would have it after the task's restore.
func benchStage(b testing.TB, topo *stream.Topology, i int) *stage {
	p, err := New(topo, Brokers("127.0.0.1:1"), ApplicationID("bench"), StateDir(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	db, err := state.Open(filepath.Join(b.TempDir(), "state"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	st := p.stages[i]
	st.db = db
	st.mu.tasks[0] = newTask(st, 0, checkpoint.Checkpoint{})
	return st
}

// benchCycles runs the per-record path of a stage the way a transaction
// does: process every record (program, store writes into the task's batch,
// outputs handed to the producer), and every 1000 records produce the
// changelogs and apply the batch with its checkpoint, as after a commit.
func benchCycles(b *testing.B, st *stage, rec func(i int) *kgo.Record) {
	prod := &discardProducer{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := st.process(prod, rec(i)); err != nil {
			b.Fatal(err)
		}
		i++
		if i%1000 == 0 {
			st.produceChangelogs(prod)
			if err := st.applyDirty(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkProcessStateless: Source -> MapValues -> To on bytes.
func BenchmarkProcessStateless(b *testing.B) {
	bld := stream.NewBuilder()
	in := stream.Source(bld, "in", codec.Bytes{}, codec.Bytes{}, stream.Named("map"))
	stream.To(stream.MapValues(in, func(_, v []byte) []byte { return v }), "out", codec.Bytes{}, codec.Bytes{})
	topo, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	st := benchStage(b, topo, 0)
	r := &kgo.Record{Topic: "in", Key: []byte("key"), Value: make([]byte, 100)}
	benchCycles(b, st, func(i int) *kgo.Record { r.Offset = int64(i); return r })
}

// BenchmarkProcessCount: the word count's counting stage (decode, Get,
// Put, encode, emit) over a 10,000-word vocabulary.
func BenchmarkProcessCount(b *testing.B) {
	st := benchStage(b, wordcount(b, "lines", "counts"), 1)
	words := make([][]byte, 10000)
	for i := range words {
		words[i] = []byte("w" + strconv.Itoa(i*7919%100003))
	}
	r := &kgo.Record{Topic: "bench-by-word-repartition"}
	benchCycles(b, st, func(i int) *kgo.Record {
		w := words[(i*31)%len(words)]
		r.Key, r.Value, r.Offset = w, w, int64(i)
		return r
	})
}
