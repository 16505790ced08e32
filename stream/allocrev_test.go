package stream_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// Concurrent calls of one Program (the scratch's atomic swap) each carve
// their outputs from their own arena: no output of one call is written by
// another (run with -race).
func TestAllocrevConcurrentCallsOwnArenas(t *testing.T) {
	b := stream.NewBuilder()
	s := src(b, "in")
	stream.To(s, "out", codec.String{}, codec.String{})
	stream.To(stream.MapValues(s, func(_, v string) int64 { return int64(len(v)) }), "lens", codec.String{}, codec.Int64Text{})
	stream.To(stream.MapValues(s, func(_, v string) int64 { return -int64(len(v)) }), "neg", codec.String{}, codec.Int64{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	p := topology.Of(topo).Stages[0].Program("app")
	const workers, n = 4, 3000
	tasks := make([]*fakeTask, workers)
	var wg sync.WaitGroup
	for w := range workers {
		tasks[w] = newTask(int32(w))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				k, v := fmt.Sprintf("w%d-key-%d", w, i), strings.Repeat(string(rune('a'+w)), i%400)
				if err := p(tasks[w], rec("in", int32(w), int64(i), k, v)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for w, task := range tasks {
		if len(task.emits) != 3*n {
			t.Fatalf("worker %d: %d outputs, want %d", w, len(task.emits), 3*n)
		}
		for i := range n {
			k, v := fmt.Sprintf("w%d-key-%d", w, i), strings.Repeat(string(rune('a'+w)), i%400)
			o := task.emits[3*i : 3*i+3]
			nb, _ := codec.Int64{}.Encode(-int64(len(v)))
			if string(o[0].Key) != k || string(o[0].Value) != v || string(o[1].Key) != k ||
				string(o[1].Value) != fmt.Sprint(len(v)) || string(o[2].Key) != k || string(o[2].Value) != string(nb) {
				t.Fatalf("worker %d record %d: outputs %v", w, i, kvs(o))
			}
		}
	}
}

// A reused Handle carries nothing from one record to the next: headers set
// upstream for one record, a record's timestamp, a failed record's state.
func TestAllocrevReusedHandleCarriesNothing(t *testing.T) {
	b := stream.NewBuilder()
	s := src(b, "in")
	tagged := stream.WithHeaders(s, func(k, v string, hs stream.Headers) stream.Headers {
		if v == "tag" {
			return hs.Add("t", []byte(k))
		}
		return hs
	})
	m := stream.MapValues(tagged, func(k, v string) string {
		if v == "panic" {
			panic("boom")
		}
		return v
	})
	f := stream.Filter(m, func(k, v string) bool { return v != "drop" })
	stream.To(f, "out", codec.String{}, codec.String{})
	stream.To(stream.Count(stream.GroupBy(f, func(k, v string) string { return v }, codec.String{}, codec.String{}), stream.Named("c")).ToStream(), "counts", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	st := topology.Of(topo).Stages[0]
	p, task := st.Program("app"), newTask(0)
	call := func(r *exec.Record) (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return p(task, r)
	}
	r1 := rec("in", 0, 1, "a", "tag")
	r1.Headers = []exec.Header{{Key: "in", Value: []byte("x")}}
	if err := call(r1); err != nil {
		t.Fatal(err)
	}
	if err := call(rec("in", 0, 2, "b", "panic")); err == nil {
		t.Fatal("no panic")
	}
	if err := call(rec("in", 0, 3, "c", "plain")); err != nil {
		t.Fatal(err)
	}
	if err := call(rec("in", 0, 4, "d", "drop")); err != nil {
		t.Fatal(err)
	}
	if err := call(rec("in", 0, 5, "e", "plain2")); err != nil {
		t.Fatal(err)
	}
	// Checked field by field: the outputs to "out" after record 1 carry no headers.
	for _, o := range task.emits {
		if o.Topic == "out" && string(o.Key) != "a" && len(o.Headers) != 0 {
			t.Errorf("output %q carries headers %v from an earlier record", o.Key, o.Headers)
		}
		if o.Topic == "out" && string(o.Key) == "a" && len(o.Headers) != 2 {
			t.Errorf("output a: headers %v, want in and t", o.Headers)
		}
	}
}
