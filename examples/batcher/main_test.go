package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/streamtest"
)

// TestTopology drives the batcher's timer with the test driver's wall
// clock: nothing is released before the clock crosses a multiple of the
// interval; then each partition with buffered items releases them all as
// its next batch, with a summary that counts them, and an empty buffer
// releases nothing.
func TestTopology(t *testing.T) {
	topo, err := Topology("in", "out", "batches", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := streamtest.New(t, topo, streamtest.Partitions(2))
	in := streamtest.NewInput(d, "in", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "out", codec.String{}, codec.String{})
	batches := streamtest.NewOutput(d, "batches", codec.String{}, codec.String{})
	partOf := func(id string) int32 { return streamtest.Partition([]byte(id), 2) }

	ids := []string{"a", "b", "c", "d", "e", "f"}
	for _, id := range ids {
		in.Pipe(id, "payload-"+id)
	}
	in.Pipe("a", "payload-a2") // again before its release: released once, last payload
	d.AdvanceWallClock(500 * time.Millisecond)
	if got := out.ReadAll(); len(got) != 0 {
		t.Fatalf("released before the interval: %+v", got)
	}
	d.AdvanceWallClock(500 * time.Millisecond) // crosses 1 s
	want := map[int32]int{}
	for _, id := range ids {
		want[partOf(id)]++
	}
	checkRelease(t, d, out, batches, partOf, 1, want)

	d.AdvanceWallClock(time.Second) // empty buffers: no batch
	if got, sums := out.ReadAll(), batches.ReadAll(); len(got)+len(sums) != 0 {
		t.Fatalf("empty buffers released %+v, summaries %+v", got, sums)
	}

	in.Pipe("g", "payload-g")
	d.AdvanceWallClock(3 * time.Second) // jumps over three multiples: one batch
	checkRelease(t, d, out, batches, partOf, 2, map[int32]int{partOf("g"): 1})
}

// checkRelease reads what the last timer released and checks it: want[p]
// items of partition p in batch "<p>-<n>" (each an id's latest payload,
// timestamped with the driver's clock), and that batch's summary.
func checkRelease(t *testing.T, d *streamtest.Driver, out, batches *streamtest.Output[string, string], partOf func(string) int32, n int, want map[int32]int) {
	t.Helper()
	got := map[int32]int{}
	for _, r := range out.ReadAll() {
		it, err := ParseItem(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		p := partOf(r.Key)
		wantPayload := "payload-" + r.Key
		if r.Key == "a" {
			wantPayload = "payload-a2"
		}
		if it.Batch != fmt.Sprintf("%d-%d", p, n) || it.Payload != wantPayload || !r.Timestamp.Equal(d.Now()) {
			t.Errorf("item %s=%q at %s, want batch %d-%d, payload %s, at %s", r.Key, r.Value, r.Timestamp, p, n, wantPayload, d.Now())
		}
		got[p]++
	}
	sums := batches.ReadAll()
	if len(sums) != len(want) {
		t.Errorf("summaries %+v, want one per partition of %v", sums, want)
	}
	for _, s := range sums {
		var p int32
		var bn int
		if _, err := fmt.Sscanf(s.Key, "%d-%d", &p, &bn); err != nil || bn != n || s.Value != fmt.Sprint(want[p]) {
			t.Errorf("summary %s=%s, want batch %d of %v", s.Key, s.Value, n, want)
		}
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("partition %d released %d items, want %d", p, got[p], w)
		}
	}
}

func TestEmbeddedBatcher(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "") // the embedded broker, even when the suite runs against a real one
	var out, errb bytes.Buffer
	if err := run([]string{"-interval", "200ms"}, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	var want strings.Builder
	for _, o := range sampleOrders {
		fmt.Fprintf(&want, "%s\t%s\n", o[0], o[1])
	}
	got := out.String()
	items, last, _ := strings.Cut(got, "10 items released in ")
	if items != want.String() || !strings.HasSuffix(last, " batches\n") {
		t.Fatalf("output:\n%s\nwant the orders, then \"10 items released in N batches\"", got)
	}
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, args := range [][]string{
		{"-guarantee", "twice"},
		{"-on-error", "ignore"},
		{"extra"},
		{"-interval", "0s"},
	} {
		var out, errb bytes.Buffer
		if err := run(args, &out, &errb); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}

func TestDescribe(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-describe"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`Stage "items"`, `"batch"`, "[every 1s on wall clock]", "batched-items", "batches"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("description lacks %q:\n%s", s, out.String())
		}
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-h"}, &out, &errb); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-brokers", "-input", "-output", "-batches", "-interval"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("usage does not list %s:\n%s", f, errb.String())
		}
	}
}
