package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

func TestEmbeddedRollup(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "") // the embedded broker, even when the suite runs against a real one
	var out, errb bytes.Buffer
	if err := run(nil, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	want := `minute	alice	2024-05-01T12:00:00.000Z	2024-05-01T12:01:00.000Z	1	0
minute	alice	2024-05-01T12:01:00.000Z	2024-05-01T12:02:00.000Z	0	1
minute	alice	2024-05-01T12:02:00.000Z	2024-05-01T12:03:00.000Z	1	0
minute	alice	2024-05-01T12:59:00.000Z	2024-05-01T13:00:00.000Z	1	0
minute	bob	2024-05-01T12:01:00.000Z	2024-05-01T12:02:00.000Z	1	0
minute	closer-0	2024-05-01T13:59:00.000Z	2024-05-01T14:00:00.000Z	1	0
minute	closer-1	2024-05-01T13:59:00.000Z	2024-05-01T14:00:00.000Z	1	0
minute	closer-2	2024-05-01T13:59:00.000Z	2024-05-01T14:00:00.000Z	1	0
minute	closer-6	2024-05-01T13:59:00.000Z	2024-05-01T14:00:00.000Z	1	0
hour	alice	2024-05-01T12:00:00.000Z	2024-05-01T13:00:00.000Z	3	1
hour	bob	2024-05-01T12:00:00.000Z	2024-05-01T13:00:00.000Z	1	0
`
	if got := out.String(); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

// TestTopology: an unpaid order emitted after its minute closed is dropped
// there, and the record that moved stream time, and every later one, is
// processed; an input event too late for the join fails as late (the
// policy's to handle).
func TestTopology(t *testing.T) {
	p := Params{Within: 2 * time.Second, Minute: 10 * time.Second, MinuteGrace: time.Second, Hour: time.Minute, HourGrace: 0}
	topo, err := Topology("events", "minutes", "hours", p)
	if err != nil {
		t.Fatal(err)
	}
	if s := topo.Stages(); len(s) != 2 || s[0].Name != "events" || s[1].Name != "minutes-by-account" {
		t.Fatalf("stages:\n%v", topo)
	}
	d := streamtest.New(t, topo)
	in := streamtest.NewInput(d, "events", codec.String{}, codec.String{})
	minutes := streamtest.NewOutput(d, "minutes", codec.String{}, codec.String{})
	hours := streamtest.NewOutput(d, "hours", codec.String{}, codec.String{})
	base := sampleBase
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	in.PipeAt(at(1), "a", "order")     // paid by the payment at 1.5
	in.PipeAt(at(1.5), "a", "payment") //
	in.PipeAt(at(4), "a", "order")     // unpaid: emitted at 9 (stream time), [0,10) open until 11: counted
	in.PipeAt(at(7), "a", "order")     // unpaid: emitted at 12.5, [0,10) closed: dropped
	in.PipeAt(at(9), "b", "order")
	in.PipeAt(at(9), "b", "payment")
	for _, s := range []float64{12.5, 15, 17.5} { // on time, all of them, the first moving stream time past 11.001
		in.PipeAt(at(s), "b", "order")
		in.PipeAt(at(s), "b", "payment")
	}
	err = in.Send(streamtest.Record[string, string]{Key: "c", Value: "order", Timestamp: at(10)}) // 10 + 2 < 17.5: late
	if !errors.Is(err, stream.ErrLateRecord) {
		t.Fatalf("late order: %v, want ErrLateRecord", err)
	}
	in.PipeAt(at(75), "", "tick") // closes [10,20); the roll-up's stream time is 17.5
	if got, want := kvs(minutes.ReadKeyValues()), "a=2024-05-01T12:00:00.000Z 2024-05-01T12:00:10.000Z 1 1 "+
		"b=2024-05-01T12:00:00.000Z 2024-05-01T12:00:10.000Z 1 0 b=2024-05-01T12:00:10.000Z 2024-05-01T12:00:20.000Z 3 0"; got != want {
		t.Fatalf("minutes %q, want %q", got, want)
	}
	if got := kvs(hours.ReadKeyValues()); got != "" {
		t.Fatalf("hours %q before the roll-up's stream time passed the hour", got)
	}
	in.PipeAt(at(76), "b", "order")
	in.PipeAt(at(76), "b", "payment")
	in.PipeAt(at(200), "", "tick") // releases b's [70,80), whose timestamp closes [0,60) in the roll-up
	if got, want := kvs(hours.ReadKeyValues()), "a=2024-05-01T12:00:00.000Z 2024-05-01T12:01:00.000Z 1 1 "+
		"b=2024-05-01T12:00:00.000Z 2024-05-01T12:01:00.000Z 4 0"; got != want {
		t.Fatalf("hours %q, want %q", got, want)
	}
}

func kvs(recs []stream.KeyValue[string, string]) string {
	var parts []string
	for _, r := range recs {
		parts = append(parts, r.Key+"="+r.Value)
	}
	return strings.Join(parts, " ")
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, args := range [][]string{
		{"-guarantee", "twice"},
		{"-on-error", "ignore"},
		{"extra"},
		{"-minute", "0s"},
		{"-hour-grace", "-1s"},
		{"-within", "-1s"},
	} {
		var out, errb bytes.Buffer
		if err := run(args, &out, &errb); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}
