package stream_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

func splitWords(_, line string) []stream.KeyValue[string, string] {
	var out []stream.KeyValue[string, string]
	for _, w := range strings.Fields(line) {
		out = append(out, stream.KeyValue[string, string]{Key: w, Value: w})
	}
	return out
}

func wordCount(t testing.TB) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	lines := stream.Source(b, "lines", codec.String{}, codec.String{}, stream.Named("read-lines"))
	words := stream.FlatMap(lines, splitWords)
	counts := stream.Count(stream.GroupBy(words, func(k, w string) string { return w },
		codec.String{}, codec.String{}, stream.Named("by-word")), stream.Named("counts"))
	stream.To(counts.ToStream(), "word-counts", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return topo
}

func TestWordCountStages(t *testing.T) {
	stages := topology.Of(wordCount(t)).Stages
	if len(stages) != 2 {
		t.Fatalf("got %d stages, want 2", len(stages))
	}
	s1, s2 := stages[0], stages[1]
	check := func(s *topology.Stage, name string, in, out []topology.TopicRef, stores []topology.StoreSpec) {
		t.Helper()
		if s.Name != name || s.GeneratedName {
			t.Errorf("stage name = %q (generated %v), want %q", s.Name, s.GeneratedName, name)
		}
		if !reflect.DeepEqual(s.Inputs, in) {
			t.Errorf("stage %q inputs = %v, want %v", name, s.Inputs, in)
		}
		if !reflect.DeepEqual(s.Outputs, out) {
			t.Errorf("stage %q outputs = %v, want %v", name, s.Outputs, out)
		}
		if !reflect.DeepEqual(s.Stores, stores) {
			t.Errorf("stage %q stores = %v, want %v", name, s.Stores, stores)
		}
	}
	rep := topology.TopicRef{Name: "by-word-repartition", Internal: true}
	check(s1, "read-lines", []topology.TopicRef{{Name: "lines"}}, []topology.TopicRef{rep}, nil)
	check(s2, "by-word", []topology.TopicRef{rep}, []topology.TopicRef{{Name: "word-counts"}},
		[]topology.StoreSpec{{Name: "counts"}})

	if got := rep.TopicName("app"); got != "app-by-word-repartition" {
		t.Errorf("TopicName = %q", got)
	}
	if got := (topology.TopicRef{Name: "lines"}).TopicName("app"); got != "lines" {
		t.Errorf("TopicName of a user topic = %q", got)
	}
	if got := topology.ChangelogTopic("app", "counts"); got != "app-counts-changelog" {
		t.Errorf("ChangelogTopic = %q", got)
	}
}

func TestWordCountPrograms(t *testing.T) {
	stages := topology.Of(wordCount(t)).Stages
	p1, p2 := stages[0].Program("app"), stages[1].Program("app")

	t1 := newTask(0)
	in := rec("lines", 0, 7, "k", "a b a")
	if err := p1(t1, in); err != nil {
		t.Fatalf("stage 1: %v", err)
	}
	reparted := t1.take()
	want := []kv{{"app-by-word-repartition", "a", "a"}, {"app-by-word-repartition", "b", "b"}, {"app-by-word-repartition", "a", "a"}}
	if got := kvs(reparted); !equalKVs(got, want) {
		t.Fatalf("stage 1 emits %v, want %v", got, want)
	}
	for _, o := range reparted {
		if o.Partition != exec.AnyPartition || !o.Timestamp.Equal(in.Timestamp) {
			t.Errorf("repartition output partition %d timestamp %v; want AnyPartition and %v", o.Partition, o.Timestamp, in.Timestamp)
		}
	}

	t2 := newTask(0, "counts")
	for i, o := range reparted {
		r := &exec.Record{Topic: o.Topic, Partition: 0, Offset: int64(i), Key: o.Key, Value: o.Value, Timestamp: o.Timestamp}
		if err := p2(t2, r); err != nil {
			t.Fatalf("stage 2, record %d: %v", i, err)
		}
	}
	want = []kv{{"word-counts", "a", "1"}, {"word-counts", "b", "1"}, {"word-counts", "a", "2"}}
	if got := kvs(t2.take()); !equalKVs(got, want) {
		t.Fatalf("stage 2 emits %v, want %v", got, want)
	}
	store := t2.stores["counts"].m
	be := func(n uint64) string { return string(binary.BigEndian.AppendUint64(nil, n)) }
	if len(store) != 2 || string(store["a"]) != be(2) || string(store["b"]) != be(1) {
		t.Fatalf("store counts = %q, want a=2 and b=1 as 8-byte big-endian", store)
	}
}

// A Program compiled once is called concurrently for several tasks; run
// under -race.
func TestProgramConcurrent(t *testing.T) {
	p := topology.Of(wordCount(t)).Stages[1].Program("app")
	var wg sync.WaitGroup
	tasks := make([]*fakeTask, 8)
	for i := range tasks {
		tasks[i] = newTask(int32(i), "counts")
		wg.Add(1)
		go func(task *fakeTask) {
			defer wg.Done()
			for j := range 200 {
				w := fmt.Sprintf("w%d", j%5)
				r := &exec.Record{Topic: "app-by-word-repartition", Partition: task.partition, Offset: int64(j),
					Key: []byte(w), Value: []byte(w), Headers: []exec.Header{{Key: "h", Value: []byte("v")}}}
				if err := p(task, r); err != nil {
					t.Error(err)
					return
				}
			}
		}(tasks[i])
	}
	wg.Wait()
	for _, task := range tasks {
		if n := len(task.emits); n != 200 {
			t.Fatalf("task %d emitted %d records, want 200", task.partition, n)
		}
		last := task.emits[len(task.emits)-1]
		if string(last.Value) != "40" {
			t.Fatalf("task %d: last count %q, want 40", task.partition, last.Value)
		}
	}
}

func TestProgramUnknownTopic(t *testing.T) {
	p := topology.Of(wordCount(t)).Stages[0].Program("app")
	err := p(newTask(0), rec("other", 0, 0, "k", "v"))
	if err == nil || !strings.Contains(err.Error(), `"other"`) || !strings.Contains(err.Error(), `"lines"`) {
		t.Fatalf("err = %v, want one naming the topic and the stage's inputs", err)
	}
}

func TestProgramEmitErrorPassesThrough(t *testing.T) {
	p := topology.Of(wordCount(t)).Stages[0].Program("app")
	task := newTask(0)
	task.emitErr = errors.New("runtime: too large")
	if err := p(task, rec("lines", 0, 0, "k", "a")); !errors.Is(err, task.emitErr) {
		t.Fatalf("err = %v, want the runtime's emit error", err)
	}
}

func TestProgramMissingStore(t *testing.T) {
	p := topology.Of(wordCount(t)).Stages[1].Program("app")
	err := p(newTask(3), rec("app-by-word-repartition", 3, 0, "a", "a"))
	if err == nil || !strings.Contains(err.Error(), `"counts"`) {
		t.Fatalf("err = %v, want one naming the missing store", err)
	}
}
