package exec

import (
	"errors"
	"sort"
	"strings"
	"testing"
)

// mapBase is an exec.Base over maps.
type mapBase map[string]map[string][]byte

func (mapBase) Partition() int32 { return 3 }

func (b mapBase) HasStore(name string) bool { _, ok := b[name]; return ok }

func (b mapBase) Get(store string, key []byte) ([]byte, bool, error) {
	v, ok := b[store][string(key)]
	return v, ok, nil
}

func (b mapBase) Scan(store string, lower, upper []byte, fn func(key, value []byte) error) error {
	var keys []string
	for k := range b[store] {
		if k >= string(lower) && (upper == nil || k < string(upper)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), b[store][k]); err != nil {
			return err
		}
	}
	return nil
}

func TestScopeReadsItsOwnWrites(t *testing.T) {
	base := mapBase{"s": {"a": []byte("1"), "b": []byte("2"), "d": []byte("4")}}
	var sc Scope
	sc.Begin(base, 1000)
	if sc.Partition() != 3 || sc.Store("nope") != nil {
		t.Fatal("Partition or an unknown store")
	}
	st := sc.Store("s")
	key := []byte("c")
	if err := st.Put(key, []byte("3")); err != nil {
		t.Fatal(err)
	}
	key[0] = 'x' // the scope copied it
	_ = st.Delete([]byte("b"))
	_ = st.Put([]byte("a"), []byte("10"))
	_ = st.Put([]byte("e"), nil) // an empty value, not a deletion
	if v, ok, _ := st.Get([]byte("c")); !ok || string(v) != "3" {
		t.Errorf("Get(c) = %q, %v", v, ok)
	}
	if _, ok, _ := st.Get([]byte("b")); ok {
		t.Error("Get(b) after Delete found it")
	}
	if v, ok, _ := st.Get([]byte("e")); !ok || len(v) != 0 {
		t.Errorf("Get(e) = %q, %v; want an empty value", v, ok)
	}
	var got []string
	_ = st.Scan(nil, nil, func(k, v []byte) error { got = append(got, string(k)+"="+string(v)); return nil })
	if strings.Join(got, " ") != "a=10 c=3 d=4 e=" {
		t.Errorf("Scan = %v", got)
	}
	got = nil
	_ = st.Scan([]byte("b"), []byte("d"), func(k, v []byte) error { got = append(got, string(k)); return nil })
	if strings.Join(got, " ") != "c" {
		t.Errorf("Scan [b, d) = %v", got)
	}
	// Nothing reached the base: the caller applies Writes on success.
	if string(base["s"]["a"]) != "1" || len(sc.Writes()) != 4 {
		t.Errorf("base changed or %d writes", len(sc.Writes()))
	}
	sc.Begin(base, 1000)
	if len(sc.Writes()) != 0 || len(sc.Emits()) != 0 || sc.Err() != nil {
		t.Error("Begin did not reset the scope")
	}
	if v, _, _ := sc.Store("s").Get([]byte("a")); string(v) != "1" {
		t.Errorf("a previous record's write leaked: %q", v)
	}
}

func TestScopeTooLarge(t *testing.T) {
	var sc Scope
	sc.Begin(mapBase{"s": {}}, 100)
	if err := sc.Emit(Output{Topic: "t", Value: make([]byte, 10)}); err != nil {
		t.Fatal(err)
	}
	err := sc.Emit(Output{Topic: "t", Value: make([]byte, 100)})
	if !errors.Is(err, ErrRecordTooLarge) || !errors.Is(sc.Err(), ErrRecordTooLarge) {
		t.Fatalf("Emit = %v, Err = %v", err, sc.Err())
	}
	if len(sc.Emits()) != 1 {
		t.Errorf("%d emits, want 1", len(sc.Emits()))
	}
	sc.Begin(mapBase{"s": {}}, 100)
	if err := sc.Store("s").Put([]byte("k"), make([]byte, 100)); !errors.Is(err, ErrRecordTooLarge) || sc.Err() == nil {
		t.Fatalf("Put = %v", err)
	}
}

// A store write with a null key (nil or empty) fails the record, even when
// the Program ignores the error, and stages nothing: its changelog record
// would have no key, which a compacted topic rejects.
func TestScopeNullKeyWrites(t *testing.T) {
	for _, key := range [][]byte{nil, {}} {
		var sc Scope
		sc.Begin(mapBase{"s": {}}, 1000)
		st := sc.Store("s")
		if err := st.Put(key, []byte("v")); !errors.Is(err, ErrNullKey) || !strings.Contains(err.Error(), "store s") {
			t.Errorf("Put(%#v) = %v, want ErrNullKey naming the store", key, err)
		}
		if err := st.Delete(key); !errors.Is(err, ErrNullKey) {
			t.Errorf("Delete(%#v) = %v, want ErrNullKey", key, err)
		}
		if !errors.Is(sc.Err(), ErrNullKey) {
			t.Errorf("Err() = %v, want ErrNullKey", sc.Err())
		}
		if len(sc.Writes()) != 0 {
			t.Errorf("%d writes staged", len(sc.Writes()))
		}
		sc.Begin(mapBase{"s": {}}, 1000)
		if sc.Err() != nil {
			t.Errorf("Begin kept the error: %v", sc.Err())
		}
	}
}

// PutOwned stages the caller's slices themselves (no copy), with Put's
// checks: a null key and a state change too large fail the record.
func TestScopePutOwned(t *testing.T) {
	var sc Scope
	sc.Begin(mapBase{"s": {}}, 100)
	st := sc.Store("s").(OwningStore)
	key, value := []byte("k"), []byte("v")
	if err := st.PutOwned(key, value); err != nil {
		t.Fatal(err)
	}
	if err := st.PutOwned([]byte("e"), nil); err != nil {
		t.Fatal(err)
	}
	ws := sc.Writes()
	if len(ws) != 2 || &ws[0].Key[0] != &key[0] || &ws[0].Value[0] != &value[0] {
		t.Fatalf("writes %+v do not hold the handed-over slices", ws)
	}
	if ws[1].Value == nil || len(ws[1].Value) != 0 {
		t.Errorf("PutOwned(e, nil) staged %#v; want an empty value, not a delete", ws[1].Value)
	}
	if v, ok, _ := st.Get([]byte("k")); !ok || string(v) != "v" {
		t.Errorf("Get(k) = %q, %v", v, ok)
	}
	if err := st.PutOwned(nil, value); !errors.Is(err, ErrNullKey) {
		t.Errorf("PutOwned(nil key) = %v, want ErrNullKey", err)
	}
	sc.Begin(mapBase{"s": {}}, 100)
	if err := sc.Store("s").(OwningStore).PutOwned([]byte("k"), make([]byte, 100)); !errors.Is(err, ErrRecordTooLarge) || sc.Err() == nil {
		t.Errorf("PutOwned too large = %v", err)
	}
	if len(sc.Writes()) != 0 {
		t.Errorf("%d writes staged by failed PutOwned calls", len(sc.Writes()))
	}
}
