package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/processor"
)

func parse(args ...string) (*Flags, bool, error) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f Flags
	f.Register(fs, Defaults{App: "x", OnError: "fail", Result: "the results"})
	help, err := f.Parse(fs, args)
	return &f, help, err
}

func TestParse(t *testing.T) {
	f, help, err := parse("-app", "a", "-guarantee", "at-most-once", "-on-error", "skip", "-describe=dot", "-admin-addr", ":9464")
	if err != nil || help || f.App != "a" || f.Guarantee != processor.AtMostOnce || f.OnError != processor.Skip || f.describe != "dot" || f.AdminAddr != ":9464" {
		t.Fatalf("got %+v help=%v err=%v", f, help, err)
	}
	if _, help, err := parse("-h"); !help || err != nil {
		t.Errorf("-h: help=%v err=%v", help, err)
	}
	for _, args := range [][]string{{"-guarantee", "twice"}, {"-on-error", "ignore"}, {"extra"}, {"-describe=svg"}} {
		_, _, err := parse(args...)
		if err == nil {
			t.Errorf("%q accepted", args)
		}
		if args[0] == "-guarantee" && !errors.Is(err, processor.ErrConfig) {
			t.Errorf("%q: %v does not wrap ErrConfig", args, err)
		}
	}
}

func TestParseBrokers(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	f, _, err := parse()
	if err != nil || f.Brokers != nil || f.StateDir != "" {
		t.Errorf("no brokers: Brokers %q, StateDir %q, err %v; want the demo's (none, none)", f.Brokers, f.StateDir, err)
	}
	f, _, err = parse("-brokers", "a:1,b:2", "-app", "x")
	if err != nil || strings.Join(f.Brokers, " ") != "a:1 b:2" || !strings.HasSuffix(f.StateDir, "/sluice/x") {
		t.Errorf("-brokers: Brokers %q, StateDir %q, err %v; want two brokers and a state directory under the cache", f.Brokers, f.StateDir, err)
	}
	f, _, err = parse("-brokers", "a:1", "-state-dir", "/s")
	if err != nil || f.StateDir != "/s" {
		t.Errorf("-state-dir: StateDir %q, err %v", f.StateDir, err)
	}
}

func TestDemoWaitFor(t *testing.T) {
	d, err := StartDemo("test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Run(context.Background(), func(ctx context.Context) error { <-ctx.Done(); return nil })
	err = d.WaitFor(context.Background(), func() bool { return false }, 50*time.Millisecond, "the results")
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "the results") {
		t.Errorf("timeout: %v", err)
	}
	if err := d.WaitFor(context.Background(), func() bool { return true }, time.Minute, "x"); err != nil {
		t.Errorf("done: %v", err)
	}
	if err := d.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := d.WaitFor(context.Background(), func() bool { return false }, time.Minute, "x"); err == nil || errors.Is(err, ErrTimeout) {
		t.Errorf("stopped: %v", err)
	}
}

func TestDemoRunUntil(t *testing.T) {
	d, err := StartDemo("test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	failed := errors.New("run failed")
	err = d.RunUntil(context.Background(), func(context.Context) error { return failed }, func() bool { return false }, time.Minute, "x")
	if !errors.Is(err, failed) {
		t.Errorf("a failed run: RunUntil = %v, want the run's error", err)
	}
	d2, err := StartDemo("test", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	stopped := false
	run := func(ctx context.Context) error { <-ctx.Done(); stopped = true; return nil }
	if err := d2.RunUntil(context.Background(), run, func() bool { return true }, time.Minute, "x"); err != nil || !stopped {
		t.Errorf("a run whose condition holds: RunUntil = %v, stopped %v; want nil, true", err, stopped)
	}
}
