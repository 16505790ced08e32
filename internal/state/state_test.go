package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/state"
)

// *state.Store is what the runtime hands to a compiled Program.
var _ exec.Store = (*state.Store)(nil)

func openMem(t testing.TB) *state.DB {
	t.Helper()
	db, err := state.Open("db", state.FS(vfs.NewMem()))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// op is one step of a script run against a Store.
type op struct {
	kind       string // "put", "del", "get", "scan"
	key, value string
	// for get: want value and ok; for scan: lower/upper in key/value and
	// the expected "k=v,k=v" listing in want.
	want   string
	wantOK bool
	noUp   bool // scan with nil upper
}

func run(t *testing.T, s *state.Store, ops []op) {
	t.Helper()
	for i, o := range ops {
		switch o.kind {
		case "put":
			if err := s.Put([]byte(o.key), []byte(o.value)); err != nil {
				t.Fatalf("op %d: Put: %v", i, err)
			}
		case "del":
			if err := s.Delete([]byte(o.key)); err != nil {
				t.Fatalf("op %d: Delete: %v", i, err)
			}
		case "get":
			v, ok, err := s.Get([]byte(o.key))
			if err != nil {
				t.Fatalf("op %d: Get: %v", i, err)
			}
			if ok != o.wantOK || string(v) != o.want {
				t.Fatalf("op %d: Get(%q) = %q, %v; want %q, %v", i, o.key, v, ok, o.want, o.wantOK)
			}
		case "scan":
			var upper []byte
			if !o.noUp {
				upper = []byte(o.value)
			}
			var lower []byte
			if o.key != "" {
				lower = []byte(o.key)
			}
			if got := scanAll(t, s, lower, upper); got != o.want {
				t.Fatalf("op %d: Scan(%q, %q) = %q, want %q", i, lower, upper, got, o.want)
			}
		default:
			t.Fatalf("op %d: unknown kind %q", i, o.kind)
		}
	}
}

func scanAll(t testing.TB, s *state.Store, lower, upper []byte) string {
	t.Helper()
	var b bytes.Buffer
	err := s.Scan(lower, upper, func(k, v []byte) error {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%s", k, v)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return b.String()
}

func TestReadYourWrites(t *testing.T) {
	tests := []struct {
		name      string
		committed map[string]string // applied before the Txn starts
		ops       []op
	}{
		{
			name: "put then get",
			ops: []op{
				{kind: "get", key: "a", wantOK: false},
				{kind: "put", key: "a", value: "1"},
				{kind: "get", key: "a", want: "1", wantOK: true},
				{kind: "put", key: "a", value: "2"},
				{kind: "get", key: "a", want: "2", wantOK: true},
			},
		},
		{
			name: "delete hides a put of the same txn",
			ops: []op{
				{kind: "put", key: "a", value: "1"},
				{kind: "del", key: "a"},
				{kind: "get", key: "a", wantOK: false},
				{kind: "scan", noUp: true, want: ""},
			},
		},
		{
			name:      "txn writes merge over committed state",
			committed: map[string]string{"a": "old", "b": "old", "c": "old"},
			ops: []op{
				{kind: "get", key: "a", want: "old", wantOK: true},
				{kind: "put", key: "a", value: "new"},
				{kind: "del", key: "b"},
				{kind: "put", key: "d", value: "new"},
				{kind: "get", key: "a", want: "new", wantOK: true},
				{kind: "get", key: "b", wantOK: false},
				{kind: "get", key: "c", want: "old", wantOK: true},
				{kind: "scan", noUp: true, want: "a=new,c=old,d=new"},
			},
		},
		{
			name: "empty value is a value",
			ops: []op{
				{kind: "put", key: "a", value: ""},
				{kind: "get", key: "a", want: "", wantOK: true},
				{kind: "del", key: "missing"},
			},
		},
		{
			name: "empty key is a key",
			ops: []op{
				{kind: "put", key: "", value: "x"},
				{kind: "get", key: "", want: "x", wantOK: true},
				{kind: "scan", noUp: true, want: "=x"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openMem(t)
			if len(tt.committed) > 0 {
				txn := db.NewTxn()
				for k, v := range tt.committed {
					if err := txn.Store("s", 0).Put([]byte(k), []byte(v)); err != nil {
						t.Fatal(err)
					}
				}
				if err := txn.Apply(); err != nil {
					t.Fatal(err)
				}
			}
			txn := db.NewTxn()
			defer txn.Discard()
			run(t, txn.Store("s", 0), tt.ops)
		})
	}
}

func TestStoreViewIsStable(t *testing.T) {
	db := openMem(t)
	txn := db.NewTxn()
	defer txn.Discard()
	if txn.Store("s", 3) != txn.Store("s", 3) {
		t.Fatal("Store returned a new view for the same store and partition")
	}
	if s := txn.Store("s", 3); s.Name() != "s" || s.Partition() != 3 {
		t.Fatalf("Name, Partition = %q, %d", s.Name(), s.Partition())
	}
}

func TestGetValueOwnership(t *testing.T) {
	db := openMem(t)
	txn := db.NewTxn()
	defer txn.Discard()
	s := txn.Store("s", 0)
	key, val := []byte("k"), []byte("v1")
	if err := s.Put(key, val); err != nil {
		t.Fatal(err)
	}
	// The Store keeps no reference to its arguments.
	key[0], val[1] = 'x', '9'
	got, ok, err := s.Get([]byte("k"))
	if err != nil || !ok || string(got) != "v1" {
		t.Fatalf("Get = %q, %v, %v; want v1", got, ok, err)
	}
	// Writing to the returned slice does not change the stored value.
	got[0] = 'z'
	again, _, _ := s.Get([]byte("k"))
	if string(again) != "v1" {
		t.Fatalf("stored value changed through a returned slice: %q", again)
	}
}

func TestDiscardLeavesDBUntouched(t *testing.T) {
	db := openMem(t)
	task := state.TaskID{Stage: "count", Partition: 0}

	base := db.NewTxn()
	mustPut(t, base.Store("s", 0), "keep", "1")
	if err := base.Apply(); err != nil {
		t.Fatal(err)
	}

	txn := db.NewTxn()
	mustPut(t, txn.Store("s", 0), "keep", "changed")
	mustPut(t, txn.Store("s", 0), "new", "x")
	if err := txn.Store("s", 0).Delete([]byte("keep")); err != nil {
		t.Fatal(err)
	}
	if err := txn.SetCheckpoint(task, checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"s": {Next: 9}}}); err != nil {
		t.Fatal(err)
	}
	if txn.Empty() {
		t.Fatal("Empty() = true with writes")
	}
	txn.Discard()
	txn.Discard() // idempotent
	if !txn.Empty() {
		t.Fatal("Empty() = false after Discard")
	}

	if _, found, err := db.Checkpoint(task); err != nil || found {
		t.Fatalf("Checkpoint after Discard: found=%v err=%v", found, err)
	}
	check := db.NewTxn()
	defer check.Discard()
	if got := scanAll(t, check.Store("s", 0), nil, nil); got != "keep=1" {
		t.Fatalf("after Discard the store holds %q, want keep=1", got)
	}
}

func TestApplyWritesDataAndCheckpoint(t *testing.T) {
	db := openMem(t)
	t0 := state.TaskID{Stage: "count", Partition: 0}
	t1 := state.TaskID{Stage: "count", Partition: 1}
	cp0 := checkpoint.Checkpoint{
		Stores:  map[string]checkpoint.Store{"counts": {TopicID: [16]byte{1}, Next: 10}},
		Inputs:  map[string]int64{"words": 100},
		Written: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	cp1 := checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"counts": {Next: 20}}}

	txn := db.NewTxn()
	if !txn.Empty() {
		t.Fatal("new Txn is not Empty")
	}
	mustPut(t, txn.Store("counts", 0), "a", "1")
	mustPut(t, txn.Store("counts", 1), "b", "2")
	if err := txn.SetCheckpoint(t0, checkpoint.Checkpoint{}); err != nil { // replaced below
		t.Fatal(err)
	}
	if err := txn.SetCheckpoint(t0, cp0); err != nil {
		t.Fatal(err)
	}
	if err := txn.SetCheckpoint(t1, cp1); err != nil {
		t.Fatal(err)
	}
	// Nothing is visible outside the Txn before Apply.
	if _, found, _ := db.Checkpoint(t0); found {
		t.Fatal("checkpoint visible before Apply")
	}
	if err := txn.Apply(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		task state.TaskID
		want checkpoint.Checkpoint
	}{{t0, cp0}, {t1, cp1}} {
		got, found, err := db.Checkpoint(c.task)
		if err != nil || !found {
			t.Fatalf("Checkpoint(%v): found=%v err=%v", c.task, found, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("Checkpoint(%v) = %+v, want %+v", c.task, got, c.want)
		}
	}
	check := db.NewTxn()
	defer check.Discard()
	if got := scanAll(t, check.Store("counts", 0), nil, nil); got != "a=1" {
		t.Fatalf("partition 0 = %q", got)
	}
	if got := scanAll(t, check.Store("counts", 1), nil, nil); got != "b=2" {
		t.Fatalf("partition 1 = %q", got)
	}
}

func TestTxnEnded(t *testing.T) {
	db := openMem(t)
	for _, end := range []string{"apply", "discard"} {
		t.Run(end, func(t *testing.T) {
			txn := db.NewTxn()
			s := txn.Store("s", 0)
			mustPut(t, s, "k", "v")
			if end == "apply" {
				if err := txn.Apply(); err != nil {
					t.Fatal(err)
				}
			} else {
				txn.Discard()
			}
			txn.Discard() // safe after either
			checks := map[string]error{
				"Apply":         txn.Apply(),
				"SetCheckpoint": txn.SetCheckpoint(state.TaskID{}, checkpoint.Checkpoint{}),
				"Put":           s.Put([]byte("k"), nil),
				"Delete":        s.Delete([]byte("k")),
				"Scan":          s.Scan(nil, nil, func(k, v []byte) error { return nil }),
			}
			_, _, checks["Get"] = s.Get([]byte("k"))
			_, _, checks["new view Get"] = txn.Store("other", 1).Get([]byte("k"))
			for name, err := range checks {
				if !errors.Is(err, state.ErrDone) {
					t.Errorf("%s after %s: err = %v, want ErrDone", name, end, err)
				}
			}
		})
	}
}

func TestScan(t *testing.T) {
	db := openMem(t)
	// Committed: a, c, e. In the Txn: b, d added, c deleted.
	base := db.NewTxn()
	for _, k := range []string{"a", "c", "e"} {
		mustPut(t, base.Store("s", 1), k, "old")
	}
	if err := base.Apply(); err != nil {
		t.Fatal(err)
	}
	txn := db.NewTxn()
	defer txn.Discard()
	s := txn.Store("s", 1)
	mustPut(t, s, "b", "new")
	mustPut(t, s, "d", "new")
	if err := s.Delete([]byte("c")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name         string
		lower, upper []byte
		want         string
	}{
		{"everything", nil, nil, "a=old,b=new,d=new,e=old"},
		{"empty lower", []byte{}, nil, "a=old,b=new,d=new,e=old"},
		{"lower inclusive", []byte("b"), nil, "b=new,d=new,e=old"},
		{"upper exclusive", nil, []byte("d"), "a=old,b=new"},
		{"both", []byte("b"), []byte("e"), "b=new,d=new"},
		{"between keys", []byte("bb"), []byte("dd"), "d=new"},
		{"deleted key bound", []byte("c"), []byte("d"), ""},
		{"lower == upper", []byte("b"), []byte("b"), ""},
		{"lower > upper", []byte("e"), []byte("a"), ""},
		{"past the end", []byte("f"), nil, ""},
		{"upper past the end", []byte("d"), []byte{0xff, 0xff}, "d=new,e=old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scanAll(t, s, tt.lower, tt.upper); got != tt.want {
				t.Fatalf("Scan(%q, %q) = %q, want %q", tt.lower, tt.upper, got, tt.want)
			}
		})
	}
}

func TestScanPrefixIsolation(t *testing.T) {
	db := openMem(t)
	txn := db.NewTxn()
	// Keys chosen to sit right at the boundaries between ranges: 0xff bytes,
	// and partitions whose big-endian bytes share a prefix.
	writes := []struct {
		store     string
		partition int32
		key       string
	}{
		{"a", 1, "x"}, {"a", 1, "\xff\xff"},
		{"a", 2, "y"}, {"a", 2, ""},
		{"a", 256, "z"},
		{"a", 0, "w"},
		{"ab", 1, "q"},
		{"", 1, "e"},
		{"b", 1, "r"},
		{"a", -1, "neg"},
		{"a", 2147483647, "max"},
	}
	for _, w := range writes {
		mustPut(t, txn.Store(w.store, w.partition), w.key, w.store)
	}
	// The same isolation holds before Apply (batch) and after (DB).
	check := func(t *testing.T, txn *state.Txn) {
		tests := []struct {
			store     string
			partition int32
			want      string
		}{
			{"a", 1, "x=a,\xff\xff=a"},
			{"a", 2, "=a,y=a"},
			{"a", 256, "z=a"},
			{"a", 0, "w=a"},
			{"a", 3, ""},
			{"ab", 1, "q=ab"},
			{"", 1, "e="},
			{"b", 1, "r=b"},
			{"a", -1, "neg=a"},
			{"a", 2147483647, "max=a"},
		}
		for _, tt := range tests {
			if got := scanAll(t, txn.Store(tt.store, tt.partition), nil, nil); got != tt.want {
				t.Errorf("Scan store %q partition %d = %q, want %q", tt.store, tt.partition, got, tt.want)
			}
		}
		// Get does not cross stores either.
		if _, ok, _ := txn.Store("ab", 1).Get([]byte("x")); ok {
			t.Error(`store "ab" sees store "a"'s key`)
		}
	}
	t.Run("in txn", func(t *testing.T) { check(t, txn) })
	if err := txn.Apply(); err != nil {
		t.Fatal(err)
	}
	t.Run("applied", func(t *testing.T) {
		txn := db.NewTxn()
		defer txn.Discard()
		check(t, txn)
	})
}

func TestScanCallback(t *testing.T) {
	db := openMem(t)
	txn := db.NewTxn()
	defer txn.Discard()
	s := txn.Store("s", 0)
	for _, k := range []string{"a", "b", "c"} {
		mustPut(t, s, k, "1")
	}

	t.Run("error stops the scan and is returned as is", func(t *testing.T) {
		stop := errors.New("stop")
		n := 0
		err := s.Scan(nil, nil, func(k, v []byte) error {
			n++
			if string(k) == "b" {
				return stop
			}
			return nil
		})
		if err != stop || n != 2 {
			t.Fatalf("Scan = %v after %d calls, want stop after 2", err, n)
		}
	})

	t.Run("writes during the scan", func(t *testing.T) {
		// fn may write to the Txn; the scan keeps its starting view.
		var seen []string
		err := s.Scan(nil, nil, func(k, v []byte) error {
			seen = append(seen, string(k))
			if err := s.Put(append([]byte("z"), k...), []byte("2")); err != nil {
				return err
			}
			if _, _, err := s.Get([]byte("a")); err != nil {
				return err
			}
			return s.Delete([]byte("c"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(seen) != "[a b c]" {
			t.Fatalf("scan saw %v, want [a b c]", seen)
		}
		if got := scanAll(t, s, nil, nil); got != "a=1,b=1,za=2,zb=2,zc=2" {
			t.Fatalf("after the scan: %q", got)
		}
	})
}

func TestWipe(t *testing.T) {
	db := openMem(t)
	task := state.TaskID{Stage: "count", Partition: 1}
	other := state.TaskID{Stage: "count", Partition: 2}
	otherStage := state.TaskID{Stage: "countx", Partition: 1}
	cp := checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"a": {Next: 1}}}

	txn := db.NewTxn()
	for _, st := range []string{"a", "ab", "b"} {
		for _, p := range []int32{0, 1, 2} {
			mustPut(t, txn.Store(st, p), "k1", "v")
			mustPut(t, txn.Store(st, p), "k2", "v")
		}
	}
	for _, tk := range []state.TaskID{task, other, otherStage} {
		if err := txn.SetCheckpoint(tk, cp); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.Apply(); err != nil {
		t.Fatal(err)
	}

	if err := db.Wipe(task, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}

	check := db.NewTxn()
	defer check.Discard()
	tests := []struct {
		store     string
		partition int32
		want      string
	}{
		{"a", 1, ""},
		{"b", 1, ""},
		{"ab", 1, "k1=v,k2=v"}, // not named in Wipe
		{"a", 0, "k1=v,k2=v"},
		{"a", 2, "k1=v,k2=v"},
		{"b", 0, "k1=v,k2=v"},
		{"b", 2, "k1=v,k2=v"},
		{"ab", 0, "k1=v,k2=v"},
	}
	for _, tt := range tests {
		if got := scanAll(t, check.Store(tt.store, tt.partition), nil, nil); got != tt.want {
			t.Errorf("after Wipe, store %q partition %d = %q, want %q", tt.store, tt.partition, got, tt.want)
		}
	}
	for _, c := range []struct {
		task  state.TaskID
		found bool
	}{{task, false}, {other, true}, {otherStage, true}} {
		if _, found, err := db.Checkpoint(c.task); err != nil || found != c.found {
			t.Errorf("Checkpoint(%v) after Wipe: found=%v err=%v, want found=%v", c.task, found, err, c.found)
		}
	}
}

func TestWriter(t *testing.T) {
	db := openMem(t)
	task := state.TaskID{Stage: "count", Partition: 4}
	w := db.NewWriter()
	defer w.Discard()
	if w.Len() != 0 {
		t.Fatalf("empty Writer Len = %d", w.Len())
	}
	if err := w.Apply(); err != nil { // empty Apply is a no-op
		t.Fatal(err)
	}
	steps := []struct {
		put, del string
	}{{put: "a"}, {put: "b"}, {put: "c"}, {del: "b"}, {put: "b"}, {del: "a"}, {del: "never"}}
	for _, st := range steps {
		var err error
		if st.put != "" {
			err = w.Put("counts", 4, []byte(st.put), []byte("v"+st.put))
		} else {
			err = w.Delete("counts", 4, []byte(st.del))
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	before := w.Len()
	if before == 0 {
		t.Fatal("Len = 0 after writes")
	}
	if err := w.SetCheckpoint(task, checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{"counts": {Next: 7}}}); err != nil {
		t.Fatal(err)
	}
	if w.Len() <= before {
		t.Fatal("Len did not grow with the checkpoint")
	}
	if err := w.Apply(); err != nil {
		t.Fatal(err)
	}
	if w.Len() != 0 {
		t.Fatalf("Len after Apply = %d, want 0", w.Len())
	}
	// The Writer is reusable after Apply.
	if err := w.Put("counts", 4, []byte("d"), []byte("vd")); err != nil {
		t.Fatal(err)
	}
	if err := w.Apply(); err != nil {
		t.Fatal(err)
	}
	// Changes after the last Apply are dropped by Discard.
	if err := w.Put("counts", 4, []byte("lost"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	w.Discard()
	w.Discard()
	if err := w.Put("counts", 4, []byte("x"), nil); !errors.Is(err, state.ErrDone) {
		t.Fatalf("Put after Discard: %v, want ErrDone", err)
	}

	cp, found, err := db.Checkpoint(task)
	if err != nil || !found || cp.Stores["counts"].Next != 7 {
		t.Fatalf("Checkpoint = %+v, %v, %v", cp, found, err)
	}
	txn := db.NewTxn()
	defer txn.Discard()
	if got := scanAll(t, txn.Store("counts", 4), nil, nil); got != "b=vb,c=vc,d=vd" {
		t.Fatalf("restored store = %q", got)
	}
}

func TestClosed(t *testing.T) {
	db, err := state.Open("db", state.FS(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	txn := db.NewTxn()
	w := db.NewWriter()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); !errors.Is(err, state.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	checks := map[string]error{
		"Txn.Apply":   txn.Apply(),
		"Store.Put":   txn.Store("s", 0).Put([]byte("k"), nil),
		"Writer.Put":  w.Put("s", 0, []byte("k"), nil),
		"Wipe":        db.Wipe(state.TaskID{}, []string{"s"}),
		"NewTxn.Put":  db.NewTxn().Store("s", 0).Put([]byte("k"), nil),
		"NewWriter.A": db.NewWriter().Apply(),
	}
	_, _, checks["Checkpoint"] = db.Checkpoint(state.TaskID{})
	for name, err := range checks {
		if !errors.Is(err, state.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	txn.Discard() // no panic
	w.Discard()
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opts []state.Opt
		want string
	}{
		{"nil fs", []state.Opt{state.FS(nil)}, "FS(nil)"},
		{"negative cache", []state.Opt{state.FS(vfs.NewMem()), state.CacheSize(-1)}, "CacheSize(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, err := state.Open("db", tt.opts...)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	db, err := state.Open("db", state.FS(vfs.NewMem()), state.CacheSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
}

func mustPut(t testing.TB, s *state.Store, k, v string) {
	t.Helper()
	if err := s.Put([]byte(k), []byte(v)); err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
}
