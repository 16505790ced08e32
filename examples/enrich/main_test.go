package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestEmbeddedCounts(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "") // the embedded broker, even when the suite runs against a real one
	var out, errb bytes.Buffer
	if err := run(nil, &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	want := `2024-05-01T12:00:00Z	de	2
2024-05-01T12:00:00Z	fr	1
2024-05-01T12:00:00Z	us	1
2024-05-01T12:01:00Z	de	1
2024-05-01T12:01:00Z	fr	2
2024-05-01T12:01:00Z	us	1
2024-05-01T12:02:00Z	de	2
2024-05-01T12:03:00Z	fr	1
2024-05-01T12:03:00Z	us	3
`
	if got := out.String(); got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, args := range [][]string{
		{"-guarantee", "twice"},
		{"-on-error", "ignore"},
		{"extra"},
		{"-commit-interval", "soon"},
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
	for _, s := range []string{`Stage "views"`, `Stage "by-country"`, `Join "enrich"`, "users", "page-views",
		"by-country-repartition", "tumbling 1m0s, grace 10m0s", "views-per-country"} {
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
	for _, f := range []string{"-brokers", "-views", "-users", "-grace"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("usage does not list %s:\n%s", f, errb.String())
		}
	}
}
