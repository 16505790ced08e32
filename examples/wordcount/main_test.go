package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestEmbeddedCountsStdin(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "") // the embedded broker, even when the suite runs against a real one
	var out, errb bytes.Buffer
	if err := run(nil, strings.NewReader("a b a\nc a\n"), &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if got, want := out.String(), "a\t3\nb\t1\nc\t1\n"; got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestEmbeddedBadInput(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	// Invalid UTF-8, an empty line, a 1 MiB line of many words and a word
	// of 100 KiB are all processed.
	words := strings.Repeat("w ", 1<<19) // 1 MiB
	long := strings.Repeat("x", 100<<10)
	in := "caf\xe9 caf\xe9\n\n" + words + "\n" + long + " b\n"
	var out, errb bytes.Buffer
	// The 1 MiB line is one record whose 524,288 words are produced in one
	// transaction: on a loaded machine with the race detector that can take
	// longer than the default 10 s transaction timeout, and the broker would
	// abort it every time.
	if err := run([]string{"-transaction-timeout", "2m"}, strings.NewReader(in), &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	// strings.ToLower turns the invalid byte into U+FFFD.
	want := "w\t524288\ncaf\uFFFD\t2\nb\t1\n" + long + "\t1\n"
	if got := out.String(); got != want {
		t.Fatalf("output has %d bytes, want %d:\n%.200q", len(got), len(want), got)
	}
}

// TestEmbeddedOversizedWord: a single 1 MiB word cannot be produced to the
// repartition topic; the error policy decides: fail names the record, skip
// counts the rest.
func TestEmbeddedOversizedWord(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	in := "a b\n" + strings.Repeat("x", 1<<20) + "\nb c\n"
	var out, errb bytes.Buffer
	err := run([]string{"-partitions", "1"}, strings.NewReader(in), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "record lines/0@1") || !strings.Contains(err.Error(), "record too large") {
		t.Fatalf("run: %v, want an error naming the record lines/0@1 as too large", err)
	}
	out.Reset()
	if err := run([]string{"-on-error", "skip", "-partitions", "1"}, strings.NewReader(in), &out, &errb); err != nil {
		t.Fatalf("run -on-error skip: %v", err)
	}
	if got, want := out.String(), "b\t2\na\t1\nc\t1\n"; got != want {
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
	} {
		var out, errb bytes.Buffer
		err := run(args, strings.NewReader(""), &out, &errb)
		if err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
}

func TestDescribe(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-describe"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"split", "by-word", "counts", "lines", "word-counts"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("description lacks %q:\n%s", s, out.String())
		}
	}
}

func TestDescribeDOT(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-describe=dot"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"digraph topology {", `label="Stage \"split\""`, `"store:counts"`, `"topic:word-counts"`} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("DOT lacks %q:\n%s", s, out.String())
		}
	}
	out.Reset()
	if err := run([]string{"-describe=text"}, strings.NewReader(""), &out, &errb); err != nil || !strings.HasPrefix(out.String(), "Topology: 2 stages") {
		t.Errorf("-describe=text: %v\n%s", err, out.String())
	}
	if err := run([]string{"-describe=svg"}, strings.NewReader(""), &out, &errb); err == nil {
		t.Error("-describe=svg succeeded")
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-h"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("-h: %v", err)
	}
	if !strings.Contains(errb.String(), "-brokers") {
		t.Errorf("usage does not list -brokers:\n%s", errb.String())
	}
}
