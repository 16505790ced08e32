package processor

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestTaskModel runs seeded random sequences of a task's operations (write,
// delete, get, scan, apply as after a commit, reset as after an abort)
// against a model of two maps: what Pebble holds and what the open
// transaction wrote. After every step the task's reads must agree with the
// model; after every apply and reset Pebble must hold exactly the committed
// model, and every read-cache entry must equal what Pebble holds.
func TestTaskModel(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			st, store := countStage(t)
			tk := st.mu.tasks[0]
			committed := map[string]string{}
			pending := map[string]*string{} // nil: deleted in the open transaction

			expect := func(k string) (string, bool) {
				if v, ok := pending[k]; ok {
					if v == nil {
						return "", false
					}
					return *v, true
				}
				v, ok := committed[k]
				return v, ok
			}
			checkPebble := func(step int) {
				t.Helper()
				got := map[string]string{}
				if err := st.db.Scan(store, 0, nil, nil, func(k, v []byte) error {
					got[string(k)] = string(v)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, committed) {
					t.Fatalf("step %d: Pebble holds %v, the committed model %v", step, got, committed)
				}
				for k, v := range tk.cache[store] {
					want, ok := committed[k]
					if (v != nil) != ok || (ok && string(v) != want) {
						t.Fatalf("step %d: the read cache holds %q=%q, Pebble %q (present %v)", step, k, v, want, ok)
					}
				}
			}

			for step := range 400 {
				k := fmt.Sprintf("k%d", rng.IntN(12))
				switch op := rng.IntN(20); {
				case op < 6: // write
					v := fmt.Sprintf("v%d", rng.IntN(1000))
					if err := tk.write(store, []byte(k), []byte(v)); err != nil {
						t.Fatal(err)
					}
					pending[k] = &v
				case op < 8: // delete
					if err := tk.write(store, []byte(k), nil); err != nil {
						t.Fatal(err)
					}
					pending[k] = nil
				case op < 13: // get
					v, ok, err := tk.Get(store, []byte(k))
					if err != nil {
						t.Fatal(err)
					}
					if want, wok := expect(k); ok != wok || string(v) != want {
						t.Fatalf("step %d: Get(%s) = %q, %v; the model has %q, %v", step, k, v, ok, want, wok)
					}
				case op < 16: // scan of [k3, k7) or of everything
					lo, hi := []byte("k3"), []byte("k7")
					if rng.IntN(2) == 0 {
						lo, hi = nil, nil
					}
					var got []string
					if err := tk.Scan(store, lo, hi, func(k, v []byte) error {
						got = append(got, string(k)+"="+string(v))
						return nil
					}); err != nil {
						t.Fatal(err)
					}
					var want []string
					for _, k := range slices.Sorted(maps.Keys(committed)) {
						want = append(want, k)
					}
					for k := range pending {
						if !slices.Contains(want, k) {
							want = append(want, k)
						}
					}
					slices.Sort(want)
					var wantKV []string
					for _, k := range want {
						if lo != nil && (k < string(lo) || k >= string(hi)) {
							continue
						}
						if v, ok := expect(k); ok {
							wantKV = append(wantKV, k+"="+v)
						}
					}
					if !slices.Equal(got, wantKV) {
						t.Fatalf("step %d: scan [%s, %s) = %v; the model has %v", step, lo, hi, got, wantKV)
					}
				case op < 18: // the transaction committed
					if err := tk.apply(); err != nil {
						t.Fatal(err)
					}
					for k, v := range pending {
						if v == nil {
							delete(committed, k)
						} else {
							committed[k] = *v
						}
					}
					clear(pending)
					checkPebble(step)
				default: // the transaction aborted
					tk.reset()
					clear(pending)
					checkPebble(step)
				}
			}
		})
	}
}
