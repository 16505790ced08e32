package state_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sluicehq/sluice/internal/state"
)

// TestScanPanicClosesIterator: a Scan callback that panics (user code under
// the Skip or DeadLetter policy, which recovers and goes on) must not leave
// the Pebble iterator open, or it pins memtables and sstables until the
// process exits. Pebble's Close reports such leaks ("leaked iterators"), so
// each case panics in a callback, recovers, and then closes the DB, which
// must succeed. It covers every Scan of the package: Store.Scan (an indexed
// batch's iterator), DB.Scan and GlobalReader.Scan (the DB's).
func TestScanPanicClosesIterator(t *testing.T) {
	for _, tc := range []struct {
		name string
		scan func(db *state.DB, fn func(k, v []byte) error) error
	}{
		{"Store.Scan", func(db *state.DB, fn func(k, v []byte) error) error {
			txn := db.NewTxn()
			defer txn.Discard()
			return txn.Store("counts", 3).Scan(nil, nil, fn)
		}},
		{"DB.Scan", func(db *state.DB, fn func(k, v []byte) error) error {
			return db.Scan("counts", 3, nil, nil, fn)
		}},
		{"GlobalReader.Scan", func(db *state.DB, fn func(k, v []byte) error) error {
			return db.Global("users").Scan(nil, nil, fn)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := state.Open("db", state.FS(vfs.NewMem()))
			if err != nil {
				t.Fatal(err)
			}
			w := db.NewWriter()
			for _, k := range []string{"a", "b", "c"} {
				if err := w.Put("counts", 3, []byte(k), []byte("v"+k)); err != nil {
					t.Fatal(err)
				}
				if err := w.Put(state.GlobalStore("users"), state.GlobalPartition, []byte(k), []byte("v"+k)); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Apply(); err != nil {
				t.Fatal(err)
			}
			calls := 0
			func() {
				defer func() {
					if r := recover(); r == nil {
						t.Error("the callback's panic did not propagate")
					}
				}()
				_ = tc.scan(db, func(k, v []byte) error {
					calls++
					if calls == 2 {
						panic("user code")
					}
					return nil
				})
			}()
			if calls != 2 {
				t.Errorf("callback ran %d times, want 2", calls)
			}
			if err := db.Close(); err != nil {
				t.Fatalf("Close after a panicking Scan callback: %v", err)
			}
		})
	}
}
