package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestEmbeddedSessions(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "") // the embedded broker, even when the suite runs against a real one
	var out, errb bytes.Buffer
	if err := run(nil, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	want := `alice	2024-05-01T12:00:00.000Z	2024-05-01T12:06:30.000Z	3
alice	2024-05-01T12:20:00.000Z	2024-05-01T12:20:00.000Z	1
bob	2024-05-01T12:01:00.000Z	2024-05-01T12:01:00.000Z	1
bob	2024-05-01T12:30:00.000Z	2024-05-01T12:30:00.000Z	1
carol	2024-05-01T12:00:00.000Z	2024-05-01T12:08:00.000Z	3
`
	if got := out.String(); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

// TestEmbeddedLateEvent: with a gap and a grace too short for carol's
// out-of-order event (12:04, produced after her 12:08 one: more than gap +
// grace behind stream time, and more than a gap from both her sessions, so
// the session it would start has closed already), it is late: skipped by
// default (her sessions stay apart), and it stops the processor under
// -on-error fail. With the default gap it would merge her sessions, however
// far behind stream time: a record is late only when its session has
// closed.
func TestEmbeddedLateEvent(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out, errb bytes.Buffer
	if err := run([]string{"-gap", "1m", "-grace", "1m"}, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if got := out.String(); !strings.Contains(got, "carol\t2024-05-01T12:00:00.000Z\t2024-05-01T12:00:00.000Z\t1\ncarol\t2024-05-01T12:08:00.000Z\t2024-05-01T12:08:00.000Z\t1\n") {
		t.Fatalf("output:\n%s\nwant carol's sessions apart", got)
	}
	out.Reset()
	if err := run([]string{"-gap", "1m", "-grace", "1m", "-on-error", "fail"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "late") {
		t.Fatalf("run -on-error fail: %v, want an error about a late record", err)
	}
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, args := range [][]string{
		{"-guarantee", "twice"},
		{"-on-error", "ignore"},
		{"extra"},
		{"-gap", "0s"},
		{"-grace", "-1s"},
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
	for _, s := range []string{`Stage "events"`, `SessionAggregate "sessions"`, `SuppressUntilWindowCloses "closed-sessions"`, "user-events", "user-sessions"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("description lacks %q:\n%s", s, out.String())
		}
	}
	out.Reset()
	if err := run([]string{"-describe=dot"}, &out, &errb); err != nil || !strings.Contains(out.String(), "digraph topology {") {
		t.Errorf("-describe=dot: %v\n%s", err, out.String())
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-h"}, &out, &errb); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-brokers", "-events", "-gap", "-grace"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("usage does not list %s:\n%s", f, errb.String())
		}
	}
}
