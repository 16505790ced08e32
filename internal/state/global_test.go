package state_test

import (
	"errors"
	"testing"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
)

// A global table's data and checkpoints: written with a Writer, read with a
// GlobalReader, isolated from tasks' stores, wiped together.
func TestGlobal(t *testing.T) {
	db := openMem(t)
	w := db.NewWriter()
	defer w.Discard()
	store := state.GlobalStore("users")
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}} {
		if err := w.Put(store, state.GlobalPartition, []byte(kv[0]), []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Delete(store, state.GlobalPartition, []byte("b")); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		cp := checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{store: {Next: int64(10 + p)}}}
		if err := w.SetCheckpoint(state.GlobalCheckpoint("users", p), cp); err != nil {
			t.Fatal(err)
		}
	}
	// A task store and a stage named like the table: untouched by the
	// global table's reads and wipe.
	if err := w.Put("users", -1, []byte("a"), []byte("task")); err != nil {
		t.Fatal(err)
	}
	if err := w.SetCheckpoint(state.TaskID{Stage: "users", Partition: 0}, checkpoint.Checkpoint{}); err != nil {
		t.Fatal(err)
	}
	// Another global table whose name extends this one's.
	if err := w.Put(state.GlobalStore("users2"), state.GlobalPartition, []byte("a"), []byte("other")); err != nil {
		t.Fatal(err)
	}
	if err := w.Apply(); err != nil {
		t.Fatal(err)
	}

	g := db.Global("users")
	if v, ok, err := g.Get([]byte("a")); err != nil || !ok || string(v) != "1" {
		t.Errorf("Get(a) = %q, %v, %v; want 1, true", v, ok, err)
	}
	if _, ok, err := g.Get([]byte("b")); err != nil || ok {
		t.Errorf("Get(b) after delete: ok=%v err=%v", ok, err)
	}
	var got string
	if err := g.Scan(nil, nil, func(k, v []byte) error { got += string(k) + "=" + string(v) + ","; return nil }); err != nil {
		t.Fatal(err)
	}
	if got != "a=1,c=3," {
		t.Errorf("Scan = %q, want a=1,c=3,", got)
	}
	got = ""
	if err := g.Scan([]byte("b"), []byte("c"), func(k, v []byte) error { got += string(k); return nil }); err != nil || got != "" {
		t.Errorf("Scan [b, c) = %q, %v; want nothing", got, err)
	}
	stop := errors.New("stop")
	if err := g.Scan(nil, nil, func(k, v []byte) error { return stop }); err != stop {
		t.Errorf("Scan's callback error: got %v", err)
	}
	cp, found, err := db.Checkpoint(state.GlobalCheckpoint("users", 2))
	if err != nil || !found || cp.Stores[store].Next != 12 {
		t.Errorf("checkpoint of partition 2: %+v, %v, %v", cp, found, err)
	}

	if err := db.WipeGlobal("users"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := g.Get([]byte("a")); ok {
		t.Error("data survived WipeGlobal")
	}
	for p := int32(0); p < 3; p++ {
		if _, found, _ := db.Checkpoint(state.GlobalCheckpoint("users", p)); found {
			t.Errorf("checkpoint of partition %d survived WipeGlobal", p)
		}
	}
	if _, found, _ := db.Checkpoint(state.TaskID{Stage: "users", Partition: 0}); !found {
		t.Error("WipeGlobal deleted the checkpoint of stage users")
	}
	if v, ok, _ := db.Global("users2").Get([]byte("a")); !ok || string(v) != "other" {
		t.Error("WipeGlobal deleted another global table's data")
	}
	txn := db.NewTxn()
	defer txn.Discard()
	if v, ok, _ := txn.Store("users", -1).Get([]byte("a")); !ok || string(v) != "task" {
		t.Error("WipeGlobal deleted a task store's data")
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.Get([]byte("a")); !errors.Is(err, state.ErrClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}
