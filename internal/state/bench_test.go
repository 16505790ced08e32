package state_test

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
)

func openDisk(b *testing.B) *state.DB {
	db, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// BenchmarkStorePutGet measures one Put and one Get of the same key in a
// Txn's indexed batch (a read-modify-write, as an aggregation does). The Txn
// is applied every 1000 operations so the batch stays a realistic size.
func BenchmarkStorePutGet(b *testing.B) {
	db := openDisk(b)
	key := make([]byte, 16)
	val := make([]byte, 100)
	txn := db.NewTxn()
	s := txn.Store("counts", 3)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		binary.BigEndian.PutUint64(key, uint64(i%10000))
		if err := s.Put(key, val); err != nil {
			b.Fatal(err)
		}
		if _, ok, err := s.Get(key); !ok || err != nil {
			b.Fatal(ok, err)
		}
		i++
		if i%1000 == 0 {
			if err := txn.Apply(); err != nil {
				b.Fatal(err)
			}
			txn = db.NewTxn()
			s = txn.Store("counts", 3)
		}
	}
	txn.Discard()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "putgets/s")
}

// BenchmarkTxnApply1000 measures a transaction of 1000 writes (100-byte
// values) spread over 4 partitions, with their checkpoints, applied in one
// batch.
func BenchmarkTxnApply1000(b *testing.B) {
	db := openDisk(b)
	key := make([]byte, 16)
	val := make([]byte, 100)
	cp := checkpoint.Checkpoint{
		Stores: map[string]checkpoint.Store{"counts": {TopicID: [16]byte{1}}},
		Inputs: map[string]int64{"words": 0},
	}
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		txn := db.NewTxn()
		for j := range 1000 {
			binary.BigEndian.PutUint64(key, uint64(n))
			n++
			if err := txn.Store("counts", int32(j%4)).Put(key, val); err != nil {
				b.Fatal(err)
			}
		}
		cp.Written = time.Now()
		for p := range int32(4) {
			cp.Stores["counts"] = checkpoint.Store{TopicID: [16]byte{1}, Next: int64(n)}
			if err := txn.SetCheckpoint(state.TaskID{Stage: "count", Partition: p}, cp); err != nil {
				b.Fatal(err)
			}
		}
		if err := txn.Apply(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "writes/s")
}

// BenchmarkWriterRestore measures restore writes through a Writer, applied
// every 4 MiB.
func BenchmarkWriterRestore(b *testing.B) {
	db := openDisk(b)
	w := db.NewWriter()
	defer w.Discard()
	key := make([]byte, 16)
	val := make([]byte, 100)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		binary.BigEndian.PutUint64(key, uint64(i))
		i++
		if err := w.Put("counts", 0, key, val); err != nil {
			b.Fatal(err)
		}
		if w.Len() >= 4<<20 {
			if err := w.Apply(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := w.Apply(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
