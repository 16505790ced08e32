package processor

import (
	"fmt"
	"slices"
	"testing"
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
