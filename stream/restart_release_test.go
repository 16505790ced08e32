package stream_test

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// TestReleaseAfterPartialRestore (found by the review of 94daae4): under
// AtLeastOnce / AtMostOnce a cycle's changelog records are produced without
// a transaction, and a kill mid-flush restarts the stage on whatever landed
// (processor/plain.go): here the stream-time store's record of a cycle that
// released a suppressed window, but not the buffer's tombstone. The
// restarted task holds a window whose close time is before its stream time,
// and the cycle's record, processed again, does not move stream time. The
// restarted task instance's first stream-time advance must scan the whole
// buffer (dueFrom), or the window is never released (output lost) and never
// deleted.
func TestReleaseAfterPartialRestore(t *testing.T) {
	b := stream.NewBuilder()
	g := stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{})
	c := stream.WindowedCount(stream.WindowedBy(g, stream.Tumbling(2*time.Second)), stream.Named("counts"))
	windowedTo(stream.SuppressUntilWindowCloses(c, stream.Named("final")), "out")
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	spec := topology.Of(topo).Stages[0]
	var names []string
	for _, s := range spec.Stores {
		names = append(names, s.Name)
	}
	p := spec.Program("app")
	task := newTask(0, names...)

	// Cycle 1, applied: window [0s, 2s) of key k is pending.
	if err := p(task, rec("in", 0, 0, "k", "v")); err != nil {
		t.Fatal(err)
	}
	task.take()

	// Cycle 2 runs on a copy: the record at 5s moves stream time past the
	// window's close (2s) and releases it; then the flush fails / the
	// process is killed. Only the stream-time store's changelog record
	// landed.
	lost := newTask(0, names...)
	for n, s := range task.stores {
		lost.stores[n].m = maps.Clone(s.m)
	}
	if err := p(lost, rec("in", 0, 5, "j", "v")); err != nil {
		t.Fatal(err)
	}
	if len(lost.take()) == 0 {
		t.Fatal("cycle 2 released nothing: the test's setup is wrong")
	}
	task.stores[spec.TimeStore].m = maps.Clone(lost.stores[spec.TimeStore].m)

	// Restart: a new task instance on the restored stores. At-least-once
	// processes cycle 2's record again, then more records come, far past
	// the window.
	restored := newTask(0)
	restored.stores = task.stores
	task = restored
	var out []string
	for _, off := range []int64{5, 6, 10, 20, 60} {
		if err := p(task, rec("in", 0, off, "j", "v")); err != nil {
			t.Fatal(err)
		}
		for _, o := range task.take() {
			if o.Topic == "out" {
				out = append(out, string(o.Key)+"="+string(o.Value))
			}
		}
	}
	released := false
	for _, o := range out {
		if strings.HasPrefix(o, "k@") {
			released = true
		}
	}
	left := len(task.stores["final"].m)
	if !released {
		t.Errorf("the window of key k closed at 2s was never released after the restore (outputs: %v); the suppression buffer still holds %d entries, stream time is past them", out, left)
	}
}
