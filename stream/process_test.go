package stream_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// visitCounter is the goka-style example: count visits per user in a store,
// emit an alert on the third visit.
func visitCounter(t *testing.T) *stream.Topology {
	b := stream.NewBuilder()
	visits := stream.DeclareStore(b, "visits", codec.String{}, codec.Int64{})
	alerts := stream.DeclareOutput(b, "alerts", codec.String{}, codec.String{})
	src := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("read-clicks"))
	stream.Process(src, func(p *stream.Handle, r stream.Record[string, string]) error {
		n, _, err := stream.Get(p, visits, r.Key)
		if err != nil {
			return err
		}
		n++
		if err := stream.Put(p, visits, r.Key, n); err != nil {
			return err
		}
		if n == 3 {
			return stream.Emit(p, alerts, r.Key, fmt.Sprintf("3 visits, last on %s@%d", r.Topic, r.Offset))
		}
		return nil
	}, stream.Uses(visits), stream.EmitsTo(alerts), stream.Named("visit-counter"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestProcessStoresAndEmit(t *testing.T) {
	stages := topology.Of(visitCounter(t)).Stages
	if len(stages) != 1 {
		t.Fatalf("%d stages, want 1", len(stages))
	}
	s := stages[0]
	if s.Name != "read-clicks" || len(s.Stores) != 1 || s.Stores[0].Name != "visits" ||
		len(s.Outputs) != 1 || s.Outputs[0] != (topology.TopicRef{Name: "alerts"}) {
		t.Fatalf("stage = %+v", s)
	}
	p := s.Program("app")
	task := newTask(2, "visits")
	for i, user := range []string{"ann", "bob", "ann", "ann", "ann"} {
		if err := p(task, rec("clicks", 2, int64(i), user, "/")); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	want := []kv{{"alerts", "ann", "3 visits, last on clicks@3"}}
	if got := kvs(task.emits); !equalKVs(got, want) {
		t.Fatalf("emits %v, want %v", got, want)
	}
	if n := binary.BigEndian.Uint64(task.stores["visits"].m["ann"]); n != 4 {
		t.Fatalf("visits[ann] = %d, want 4", n)
	}
}

func TestProcessUndeclared(t *testing.T) {
	b := stream.NewBuilder()
	declared := stream.DeclareStore(b, "declared", codec.String{}, codec.String{})
	other := stream.DeclareStore(b, "other", codec.String{}, codec.String{})
	out := stream.DeclareOutput(b, "out", codec.String{}, codec.String{})
	otherOut := stream.DeclareOutput(b, "other-out", codec.String{}, codec.String{})
	s := src(b, "in")
	// Another processor uses "other" and "other-out", so they are declared
	// in the topology, just not by "p".
	stream.Process(s, noop, stream.Uses(other), stream.EmitsTo(otherOut), stream.Named("q"))

	var errs []error
	stream.Process(s, func(h *stream.Handle, r stream.Record[string, string]) error {
		_, _, err := stream.Get(h, other, r.Key)
		errs = append(errs, err)
		errs = append(errs, stream.Put(h, other, r.Key, "v"))
		errs = append(errs, stream.Delete(h, other, r.Key))
		errs = append(errs, stream.Scan(h, other, func(string, string) error { return nil }))
		errs = append(errs, stream.Emit(h, otherOut, r.Key, "v"))
		errs = append(errs, stream.Put(h, declared, r.Key, "ok"), stream.Emit(h, out, r.Key, "ok"))
		return nil
	}, stream.Uses(declared), stream.EmitsTo(out), stream.Named("p"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(0, "declared", "other")
	if err := topology.Of(topo).Stages[0].Program("app")(task, rec("in", 0, 0, "k", "v")); err != nil {
		t.Fatal(err)
	}
	for i, err := range errs[:4] {
		if !errors.Is(err, stream.ErrUndeclaredStore) || !strings.Contains(err.Error(), `"other"`) || !strings.Contains(err.Error(), `Process "p"`) {
			t.Errorf("store call %d: %v, want ErrUndeclaredStore naming the store and processor", i, err)
		}
	}
	if err := errs[4]; !errors.Is(err, stream.ErrUndeclaredOutput) || !strings.Contains(err.Error(), `"other-out"`) {
		t.Errorf("Emit: %v, want ErrUndeclaredOutput naming the output", err)
	}
	if errs[5] != nil || errs[6] != nil {
		t.Errorf("declared store/output: %v, %v", errs[5], errs[6])
	}
	if len(task.stores["other"].m) != 0 || string(task.stores["declared"].m["k"]) != "ok" {
		t.Errorf("stores = %v / %v", task.stores["other"].m, task.stores["declared"].m)
	}
	if got := kvs(task.emits); !equalKVs(got, []kv{{"out", "k", "ok"}}) {
		t.Errorf("emits %v", got)
	}
}

func TestProcessScans(t *testing.T) {
	b := stream.NewBuilder()
	st := stream.DeclareStore(b, "s", codec.String{}, codec.Int64{})
	var got []string
	stream.Process(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string]) error {
		for i, k := range []string{"a/1", "a/2", "b/1", "b/2", "c"} {
			if err := stream.Put(h, st, k, int64(i)); err != nil {
				return err
			}
		}
		if err := stream.Delete(h, st, "b/2"); err != nil {
			return err
		}
		collect := func(tag string) func(k string, v int64) error {
			return func(k string, v int64) error {
				got = append(got, fmt.Sprintf("%s:%s=%d", tag, k, v))
				return nil
			}
		}
		if err := stream.Scan(h, st, collect("all")); err != nil {
			return err
		}
		if err := stream.ScanPrefix(h, st, "a/", collect("prefix")); err != nil {
			return err
		}
		if err := stream.Range(h, st, "a/2", "c", collect("range")); err != nil {
			return err
		}
		if err := stream.Range(h, st, "b", "", collect("empty")); err != nil {
			return err
		}
		stop := errors.New("stop")
		if err := stream.Scan(h, st, func(string, int64) error { return stop }); err != stop {
			return fmt.Errorf("Scan did not return fn's error: %v", err)
		}
		return nil
	}, stream.Uses(st))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := topology.Of(topo).Stages[0].Program("app")(newTask(0, "s"), rec("in", 0, 0, "k", "v")); err != nil {
		t.Fatal(err)
	}
	want := "all:a/1=0 all:a/2=1 all:b/1=2 all:c=4 prefix:a/1=0 prefix:a/2=1 range:a/2=1 range:b/1=2"
	if g := strings.Join(got, " "); g != want {
		t.Fatalf("scans:\n got %s\nwant %s", g, want)
	}
}

func TestProcessToForwards(t *testing.T) {
	b := stream.NewBuilder()
	seen := stream.DeclareStore(b, "seen", codec.String{}, codec.String{})
	dedup := stream.ProcessTo(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string], fwd stream.Forwarder[string, int64]) error {
		if _, ok, err := stream.Get(h, seen, r.Value); err != nil || ok {
			return err
		}
		if err := stream.Put(h, seen, r.Value, ""); err != nil {
			return err
		}
		return fwd.Forward(r.Value, int64(len(r.Value)))
	}, stream.Uses(seen), stream.Named("dedup"))
	stream.To(dedup, "out", codec.String{}, codec.Int64Text{})
	// The forwarded keys may differ from the input's: GroupByKey repartitions.
	stream.Count(stream.GroupByKey(dedup, codec.String{}, codec.Int64{}, stream.Named("again")), stream.Named("n"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(topology.Of(topo).Stages); n != 2 {
		t.Fatalf("%d stages, want 2 (GroupByKey after ProcessTo repartitions)", n)
	}
	task := newTask(0, "seen")
	p := topology.Of(topo).Stages[0].Program("app")
	for i, v := range []string{"xy", "xy", "abc"} {
		if err := p(task, rec("in", 0, int64(i), "k", v)); err != nil {
			t.Fatal(err)
		}
	}
	want := []kv{{"out", "xy", "2"}, {"app-again-repartition", "xy", "\x00\x00\x00\x00\x00\x00\x00\x02"},
		{"out", "abc", "3"}, {"app-again-repartition", "abc", "\x00\x00\x00\x00\x00\x00\x00\x03"}}
	if got := kvs(task.emits); !equalKVs(got, want) {
		t.Fatalf("emits %q, want %q", got, want)
	}
}

func TestProcessErrorWrapped(t *testing.T) {
	b := stream.NewBuilder()
	boom := errors.New("boom")
	s := stream.ProcessTo(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string], fwd stream.Forwarder[string, string]) error {
		return fwd.Forward(r.Key, r.Value)
	}, stream.Named("outer"))
	stream.Process(s, func(*stream.Handle, stream.Record[string, string]) error { return boom }, stream.Named("inner"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	err = topology.Of(topo).Stages[0].Program("app")(newTask(0), rec("in", 0, 0, "k", "v"))
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"inner"`) || strings.Contains(err.Error(), `"outer"`) {
		t.Fatalf("err = %v, want boom wrapped once with the failing processor's name", err)
	}
}

// A panic in a user function reaches the runtime, which recovers it.
func TestProcessPanicNotRecovered(t *testing.T) {
	b := stream.NewBuilder()
	stream.Process(src(b, "in"), func(*stream.Handle, stream.Record[string, string]) error { panic("user bug") })
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r != "user bug" {
			t.Fatalf("recovered %v, want the user's panic", r)
		}
	}()
	_ = topology.Of(topo).Stages[0].Program("app")(newTask(0), rec("in", 0, 0, "k", "v"))
	t.Fatal("Program returned; want a panic")
}

func TestHandleAfterCall(t *testing.T) {
	b := stream.NewBuilder()
	st := stream.DeclareStore(b, "s", codec.String{}, codec.String{})
	var kept *stream.Handle
	var fwdKept stream.Forwarder[string, string]
	out := stream.ProcessTo(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string], fwd stream.Forwarder[string, string]) error {
		kept, fwdKept = h, fwd
		return nil
	}, stream.Uses(st))
	stream.To(out, "out", codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(0, "s")
	if err := topology.Of(topo).Stages[0].Program("app")(task, rec("in", 0, 0, "k", "v")); err != nil {
		t.Fatal(err)
	}
	if err := stream.Put(kept, st, "k", "v"); err == nil || len(task.stores["s"].m) != 0 {
		t.Errorf("Put through a kept Handle: %v", err)
	}
	if err := fwdKept.Forward("k", "v"); err == nil || len(task.emits) != 0 {
		t.Errorf("Forward through a kept Forwarder: %v", err)
	}
	if err := (stream.Forwarder[string, string]{}).Forward("k", "v"); err == nil {
		t.Error("zero Forwarder: no error")
	}
	if _, _, err := stream.Get(nil, st, "k"); err == nil {
		t.Error("nil Handle: no error")
	}
}

func TestCodecErrors(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "in", codec.String{}, failCodec{}, stream.Named("read"))
	stream.To(s, "out", codec.String{}, failCodec{}, stream.Named("write"))
	n := stream.Source(b, "nums", codec.String{}, codec.Int64{}, stream.Named("read-nums"))
	stream.To(n, "nums-out", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	stages := topology.Of(topo).Stages

	// A plain decode error from a user codec still matches codec.ErrDecode.
	err = stages[0].Program("app")(newTask(0), rec("in", 4, 17, "k", "bad"))
	var ce *stream.CodecError
	if !errors.As(err, &ce) || !errors.Is(err, codec.ErrDecode) {
		t.Fatalf("err = %v, want a *CodecError matching codec.ErrDecode", err)
	}
	if ce.Op != "decode" || ce.Part != "value" || ce.Topic != "in" || ce.Partition != 4 || ce.Offset != 17 {
		t.Errorf("CodecError = %+v", ce)
	}
	for _, w := range []string{"decode value", `topic "in"`, "in/4@17", `Source "read"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}

	// Int64 wants 8 bytes: the value fails; an Int64 key would too.
	err = stages[1].Program("app")(newTask(0), rec("nums", 1, 2, "k", "123"))
	if !errors.As(err, &ce) || !errors.Is(err, codec.ErrDecode) || ce.Part != "value" || ce.Offset != 2 {
		t.Fatalf("err = %v, want a value decode error", err)
	}

	// Encode failures are CodecErrors too, but not decode errors.
	b = stream.NewBuilder()
	s = src(b, "in")
	stream.To(s, "out", codec.String{}, failCodec{}, stream.Named("write"))
	topo, err = b.Build()
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(0)
	err = topology.Of(topo).Stages[0].Program("app")(task, rec("in", 0, 3, "k", "bad"))
	if !errors.As(err, &ce) || !errors.Is(err, errEncode) || errors.Is(err, codec.ErrDecode) ||
		ce.Op != "encode" || ce.Part != "value" || !strings.Contains(err.Error(), `To "write"`) {
		t.Fatalf("err = %v, want a value encode error of To \"write\"", err)
	}
	if len(task.emits) != 0 {
		t.Fatalf("emitted %v after an encode error", task.emits)
	}
}

func TestStoreDecodeError(t *testing.T) {
	b := stream.NewBuilder()
	st := stream.DeclareStore(b, "s", codec.String{}, codec.Int64{})
	stream.Process(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string]) error {
		_, _, err := stream.Get(h, st, r.Key)
		return err
	}, stream.Uses(st), stream.Named("p"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(0, "s")
	task.stores["s"].m["k"] = []byte("short")
	err = topology.Of(topo).Stages[0].Program("app")(task, rec("in", 0, 0, "k", "v"))
	if !errors.Is(err, codec.ErrDecode) || !strings.Contains(err.Error(), `store "s"`) {
		t.Fatalf("err = %v, want a decode error naming the store", err)
	}
}

// Outputs carry the input's timestamp and a copy of its headers, and never
// alias the input's buffers (which the runtime reuses after the call), even
// with codec.Bytes.
func TestOutputsOwnTheirMemory(t *testing.T) {
	b := stream.NewBuilder()
	s := stream.Source(b, "in", codec.Bytes{}, codec.Bytes{})
	stream.To(s, "out", codec.Bytes{}, codec.Bytes{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	task := newTask(0)
	r := rec("in", 0, 5, "key", "value")
	r.Headers = []exec.Header{{Key: "trace", Value: []byte("abc")}}
	if err := topology.Of(topo).Stages[0].Program("app")(task, r); err != nil {
		t.Fatal(err)
	}
	copy(r.Key, "XXX")
	copy(r.Value, "XXXXX")
	copy(r.Headers[0].Value, "XXX")
	o := task.emits[0]
	if string(o.Key) != "key" || string(o.Value) != "value" || len(o.Headers) != 1 ||
		o.Headers[0].Key != "trace" || string(o.Headers[0].Value) != "abc" {
		t.Fatalf("output changed with the input's buffers: %q %q %q", o.Key, o.Value, o.Headers)
	}
	if !o.Timestamp.Equal(r.Timestamp) || o.Partition != exec.AnyPartition {
		t.Fatalf("output timestamp %v partition %d; want %v and AnyPartition", o.Timestamp, o.Partition, r.Timestamp)
	}
}

// A Handle kept from one call does not work in a later one, even while the
// later call runs: Programs with Process functions never reuse a Handle
// (only those whose operators do not hand it to user code do).
func TestHandleKeptFromEarlierCall(t *testing.T) {
	b := stream.NewBuilder()
	st := stream.DeclareStore(b, "s", codec.String{}, codec.String{})
	var kept *stream.Handle
	var keptErr error
	stream.Process(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string]) error {
		if kept == nil {
			kept = h
			return nil
		}
		keptErr = stream.Put(kept, st, "k", "v")
		return nil
	}, stream.Uses(st))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	p, task := topology.Of(topo).Stages[0].Program("app"), newTask(0, "s")
	for i := range 2 {
		if err := p(task, rec("in", 0, int64(i), "k", "v")); err != nil {
			t.Fatal(err)
		}
	}
	if keptErr == nil || len(task.stores["s"].m) != 0 {
		t.Errorf("Put through the first call's Handle during the second: %v; want an error", keptErr)
	}
}

// Outputs keep their bytes after later calls, whose encodings the stage
// carves from the same memory (arena.go): nothing is handed out twice.
func TestOutputsIntactAcrossCalls(t *testing.T) {
	b := stream.NewBuilder()
	s := src(b, "in")
	stream.To(s, "out", codec.String{}, codec.String{})
	stream.To(stream.MapValues(s, func(_, v string) int64 { return int64(len(v)) }), "lens", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	p, task := topology.Of(topo).Stages[0].Program("app"), newTask(0)
	var want []kv
	for i := range 5000 {
		k, v := fmt.Sprint("key-", i), strings.Repeat("v", i%300)
		if err := p(task, rec("in", 0, int64(i), k, v)); err != nil {
			t.Fatal(err)
		}
		want = append(want, kv{"out", k, v}, kv{"lens", k, fmt.Sprint(len(v))})
	}
	if got := kvs(task.emits); !equalKVs(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("output %d is %v, want %v", i, got[i], want[i])
			}
		}
		t.Fatalf("%d outputs, want %d", len(got), len(want))
	}
}

// A Handle kept by a call that panicked does not work in a later call: the
// runtime recovers the panic (processor's stage.call) and goes on with the
// next record, so the Handle must be ended on the panic's way out as well.
func TestHandleKeptAcrossPanic(t *testing.T) {
	b := stream.NewBuilder()
	st := stream.DeclareStore(b, "s", codec.String{}, codec.String{})
	var kept *stream.Handle
	var keptErr error
	stream.Process(src(b, "in"), func(h *stream.Handle, r stream.Record[string, string]) error {
		if kept == nil {
			kept = h
			panic("user bug")
		}
		keptErr = stream.Put(kept, st, "k", "v")
		return nil
	}, stream.Uses(st))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	p, task := topology.Of(topo).Stages[0].Program("app"), newTask(0, "s")
	func() {
		defer func() {
			if r := recover(); r != "user bug" {
				t.Fatalf("recovered %v, want the user's panic", r)
			}
		}()
		_ = p(task, rec("in", 0, 0, "k", "v"))
	}()
	if err := p(task, rec("in", 0, 1, "k", "v")); err != nil {
		t.Fatal(err)
	}
	if keptErr == nil || len(task.stores["s"].m) != 0 {
		t.Errorf("Put through the panicked call's Handle during a later call: %v; want an error", keptErr)
	}
}
