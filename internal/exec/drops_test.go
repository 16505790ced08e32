package exec

import (
	"errors"
	"testing"
)

// dropsBase is a mapBase that takes exec.Drops reports.
type dropsBase struct {
	mapBase
	late   []error
	failed []error
	fail   bool
}

func (b *dropsBase) DropLate(err error) { b.late = append(b.late, err) }

func (b *dropsBase) DropFailed(err error) error {
	b.failed = append(b.failed, err)
	if b.fail {
		return err
	}
	return nil
}

func TestScopeRollbackTo(t *testing.T) {
	base := mapBase{"s": {"a": []byte("1")}}
	var sc Scope
	sc.Begin(base, 100)
	st := sc.Store("s")
	if err := st.Put([]byte("a"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := sc.Emit(Output{Topic: "out", Value: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	sp := sc.Savepoint()
	if err := st.Put([]byte("a"), []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := sc.Emit(Output{Topic: "out", Value: []byte("dropped")}); err != nil {
		t.Fatal(err)
	}
	if err := sc.Emit(Output{Topic: "out", Value: make([]byte, 200)}); !errors.Is(err, ErrRecordTooLarge) || sc.Err() == nil {
		t.Fatalf("emit too large: %v, Err %v", err, sc.Err())
	}
	sc.RollbackTo(sp)
	if v, _, _ := st.Get([]byte("a")); string(v) != "2" {
		t.Errorf("a = %q after rollback, want the write before the savepoint", v)
	}
	if len(sc.Writes()) != 1 || len(sc.Emits()) != 1 || string(sc.Emits()[0].Value) != "kept" || sc.Err() != nil {
		t.Errorf("after rollback: writes %v, emits %v, err %v", sc.Writes(), sc.Emits(), sc.Err())
	}
	// Staging goes on after a rollback.
	if err := st.Put([]byte("c"), []byte("5")); err != nil || len(sc.Writes()) != 2 {
		t.Errorf("put after rollback: %v, writes %v", err, sc.Writes())
	}
}

func TestScopeDropsForwardToBase(t *testing.T) {
	errLate, errHook := errors.New("late"), errors.New("hook")
	var sc Scope
	// A Base without Drops: late drops go uncounted, failures fail.
	sc.Begin(mapBase{}, 100)
	sc.DropLate(errLate)
	if err := sc.DropFailed(errHook); err != errHook {
		t.Errorf("DropFailed without a Drops base: %v, want the error back", err)
	}
	b := &dropsBase{mapBase: mapBase{}}
	sc.Begin(b, 100)
	sc.DropLate(errLate)
	if err := sc.DropFailed(errHook); err != nil {
		t.Errorf("DropFailed: %v, want the base's nil", err)
	}
	b.fail = true
	if err := sc.DropFailed(errHook); err != errHook {
		t.Errorf("DropFailed: %v, want the base's error", err)
	}
	if len(b.late) != 1 || len(b.failed) != 2 {
		t.Errorf("base saw late %v, failed %v", b.late, b.failed)
	}
}
