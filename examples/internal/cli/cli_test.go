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

func parse(args ...string) (*Common, bool, error) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c Common
	c.Register(fs, Defaults{App: "x", Policy: "fail", Result: "the results"})
	help, err := c.Parse(fs, args)
	return &c, help, err
}

func TestParse(t *testing.T) {
	c, help, err := parse("-app", "a", "-guarantee", "at-most-once", "-describe=dot")
	if err != nil || help || c.App != "a" || c.Guarantee != "at-most-once" || c.Describe != "dot" {
		t.Fatalf("got %+v help=%v err=%v", c, help, err)
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

func TestWaitFor(t *testing.T) {
	err := WaitFor(context.Background(), func() bool { return false }, 50*time.Millisecond, nil, "the results")
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "the results") {
		t.Errorf("timeout: %v", err)
	}
	stopped := make(chan struct{})
	close(stopped)
	if err := WaitFor(context.Background(), func() bool { return false }, time.Minute, stopped, "x"); err == nil || errors.Is(err, ErrTimeout) {
		t.Errorf("stopped: %v", err)
	}
	if err := WaitFor(context.Background(), func() bool { return true }, time.Minute, nil, "x"); err != nil {
		t.Errorf("done: %v", err)
	}
}
