package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// wordcount is the word count: lines -> words -> by word -> count.
func wordcount(t *testing.T, input, output string) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	lines := stream.Source(b, input, codec.String{}, codec.String{}, stream.Named("split"))
	words := stream.FlatMap(lines, func(_, line string) []stream.KeyValue[string, string] {
		var out []stream.KeyValue[string, string]
		for _, w := range strings.Fields(line) {
			out = append(out, stream.KeyValue[string, string]{Key: w, Value: w})
		}
		return out
	}, stream.Named("words"))
	g := stream.GroupBy(words, func(w, _ string) string { return w }, codec.String{}, codec.String{}, stream.Named("by-word"))
	stream.To(stream.Count(g, stream.Named("counts")).ToStream(), output, codec.String{}, codec.Int64Text{}, stream.Named("write-counts"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// sluice runs the command line and returns its exit status and output.
func sluice(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// processorRun is a running word count.
type processorRun struct {
	p      *processor.Processor
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, brokers []string, app, input, output, dir string) *processorRun {
	t.Helper()
	p, err := processor.New(wordcount(t, input, output),
		processor.Brokers(brokers...), processor.ApplicationID(app), processor.StateDir(dir),
		processor.SessionTimeout(6*time.Second), processor.HeartbeatInterval(500*time.Millisecond),
		processor.RebalanceTimeout(10*time.Second), processor.TransactionTimeout(10*time.Second),
		processor.Logger(slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &processorRun{p: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	return r
}

func (r *processorRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitOutput waits until topic holds n read_committed records, and returns
// them.
func waitOutput(t *testing.T, brokers []string, topic string, n int, r *processorRun) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		recs := testbroker.ReadCommitted(t, brokers, topic)
		if len(recs) >= n {
			return recs
		}
		select {
		case err := <-r.done:
			t.Fatalf("Run returned with %d of %d output records: %v", len(recs), n, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("output has %d of %d records after 3 minutes", len(recs), n)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestIntegrationReset runs the word count, checks `sluice status`, refuses
// a reset while an instance runs, resets, and runs the word count again on
// the same state directory: a read_committed reader sees every word's counts
// 1..n from the first run and again 1..n from the second, each exactly once
// (the processor rebuilt its stores from the recreated changelogs by
// itself).
func TestIntegrationReset(t *testing.T) {
	brokers := testbroker.Brokers(t)
	b := strings.Join(brokers, ",")
	app := testbroker.Unique(t, "reset")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 2, nil)
	testbroker.CreateTopic(t, brokers, output, 2, nil)
	want := map[string]int{}
	total := 0
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(input))
	var recs []*kgo.Record
	for i := range 300 {
		line := fmt.Sprintf("w%d w%d w%d", i%7, i%11, i%13)
		for _, w := range strings.Fields(line) {
			want[w]++
			total++
		}
		recs = append(recs, &kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte(line)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	r := start(t, brokers, app, input, output, dir)
	waitOutput(t, brokers, output, total, r)
	r.stop(t)

	code, out, errOut := sluice("status", "--app", app, "--brokers", b)
	if code != 0 || !strings.Contains(out, "stage split") || !strings.Contains(out, "stage by-word") || !strings.Contains(out, app+"-counts-changelog") {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}

	// An instance running: reset refuses and changes nothing.
	r = start(t, brokers, app, input, output, dir)
	deadline := time.Now().Add(2 * time.Minute)
	for r.p.State() != processor.StateRunning {
		if time.Now().After(deadline) {
			t.Fatalf("the second run is %v after 2 minutes", r.p.State())
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, _, errOut = sluice("reset", "--app", app, "--brokers", b)
	if code != 1 || !strings.Contains(errOut, "members are active") {
		t.Errorf("reset with an instance running: exit %d, %q; want 1 and a refusal", code, errOut)
	}
	r.stop(t)
	code, out, _ = sluice("reset", "--app", app, "--brokers", b, "--dry-run")
	if code != 0 || !strings.Contains(out, "delete topic "+app+"-counts-changelog") || !strings.Contains(out, "delete consumer group "+app+"-split") {
		t.Errorf("reset --dry-run: exit %d\n%s", code, out)
	}
	if code, out, errOut := sluice("status", "--app", app, "--brokers", b); code != 0 || !strings.Contains(out, app+"-counts-changelog") {
		t.Fatalf("after a refused reset and a dry run the changelog is gone or status fails: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = sluice("reset", "--app", app, "--brokers", b)
	if code != 0 {
		t.Fatalf("reset: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("reset:\n%s", out)
	if code, out, _ := sluice("status", "--app", app, "--brokers", b); code != 1 {
		t.Errorf("status after the reset found the application: exit %d\n%s", code, out)
	}

	r = start(t, brokers, app, input, output, dir)
	all := waitOutput(t, brokers, output, 2*total, r)
	r.stop(t)
	all = testbroker.ReadCommitted(t, brokers, output) // everything, after the stop
	seen := map[string][]int{}
	for _, rec := range all {
		n, err := strconv.Atoi(string(rec.Value))
		if err != nil {
			t.Fatalf("output value %q: %v", rec.Value, err)
		}
		seen[string(rec.Key)] = append(seen[string(rec.Key)], n)
	}
	for w, n := range want {
		var exp []int
		for range 2 {
			for i := 1; i <= n; i++ {
				exp = append(exp, i)
			}
		}
		if fmt.Sprint(seen[w]) != fmt.Sprint(exp) {
			t.Errorf("word %s: counts %v, want 1..%d twice (once per run)", w, seen[w], n)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("output has %d words, want %d", len(seen), len(want))
	}
}

// TestBadInput: usage errors exit 2, an unknown application or unreachable
// brokers exit 1, each with a message.
func TestBadInput(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"status", "--brokers", "127.0.0.1:1"}, 2, "--app is required"},
		{[]string{"status", "--app", "a"}, 2, "no brokers"},
		{[]string{"reset", "--app", "a", "--brokers", "x:1", "--to-earliest", "--by-duration", "1h"}, 2, "give one of"},
		{[]string{"reset", "--app", "a", "--brokers", "x:1", "--to-datetime", "yesterday"}, 2, "RFC 3339"},
		{[]string{"status", "--app", "a", "--brokers", "127.0.0.1:1", "--timeout", "1s"}, 1, "no answer from the brokers"},
	} {
		code, _, errOut := sluice(tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.msg) {
			t.Errorf("sluice %q: exit %d, %q; want %d and %q", tc.args, code, errOut, tc.code, tc.msg)
		}
	}
	brokers := testbroker.Brokers(t)
	code, _, errOut := sluice("status", "--app", testbroker.Unique(t, "nothing"), "--brokers", strings.Join(brokers, ","))
	if code != 1 || !strings.Contains(errOut, "no application") {
		t.Errorf("unknown application: exit %d, %q", code, errOut)
	}
}
