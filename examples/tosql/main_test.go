package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/sink/sqlsink/sqlsinktest"
)

func TestMain(m *testing.M) { sqlsinktest.Main(m) }

func TestEmbeddedSQLite(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "") // the embedded broker, even when the suite runs against a real one
	var out, errb bytes.Buffer
	in := "alice 10\nbob 5\n\nalice -3\ncarol 0\n"
	if err := run(nil, strings.NewReader(in), &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if got, want := out.String(), "alice\t7\t2\nbob\t5\t1\ncarol\t0\t1\n"; got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestEmbeddedPostgres(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	dsn := sqlsinktest.Postgres(t)
	var out, errb bytes.Buffer
	args := []string{"-postgres", dsn, "-ledger", "-partitions", "2"}
	if err := run(args, strings.NewReader("x 1\ny 2\nx 3\n"), &out, &errb); err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if got, want := out.String(), "x\t4\t2\ny\t2\t1\n"; got != want {
		t.Fatalf("output:\n%s\nwant:\n%s", got, want)
	}
	// A second demo run on the same database would resume from offsets of
	// a Kafka that no longer exists: it refuses.
	err := run(args, strings.NewReader("x 1\n"), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "earlier run") {
		t.Fatalf("second run on the same database: %v, want a refusal", err)
	}
}

func TestEmbeddedBadAmount(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	var out, errb bytes.Buffer
	err := run([]string{"-timeout", "30s"}, strings.NewReader("alice ten\n"), &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "not a whole number") || !strings.Contains(err.Error(), "@0") {
		t.Fatalf("run = %v, want an error naming the record", err)
	}
}

func TestFlagErrors(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, args := range [][]string{
		{"-table", "bad name"},
		{"-table", "1x"},
		{"extra"},
		{"-commit-interval", "soon"},
		{"-commit-interval", "0s"},
		{"-max-records", "0"},
	} {
		var out, errb bytes.Buffer
		if err := run(args, strings.NewReader(""), &out, &errb); err == nil {
			t.Errorf("run(%q) succeeded, want an error", args)
		}
	}
	// One line that is not "account amount".
	var out, errb bytes.Buffer
	if err := run(nil, strings.NewReader("alice\n"), &out, &errb); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad input line: %v", err)
	}
}

func TestHelpExitsCleanly(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"-h"}, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-brokers", "-db", "-postgres", "-instance-id", "-commit-interval"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("usage does not list %s:\n%s", f, errb.String())
		}
	}
}
