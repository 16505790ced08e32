// Command sessions groups each user's activity into sessions, exactly-once:
// events (key = user, value = event) are grouped by user, without a
// repartition, into session windows of event time (the records' timestamps)
// that end after -gap without an event of the user; an out-of-order event
// still extends or merges its user's sessions unless the session it would
// make has closed (its last event + gap + grace before stream time). Each session's count of events is
// emitted once, when the session closes (SuppressUntilWindowCloses: stream
// time past its last event + gap + grace), so a reader sees final sessions
// only, never an update of one: key = user, value = "start end count"
// (times in RFC 3339 with milliseconds, UTC; end is the last event's time).
// Records with an empty key are clock ticks: they advance stream time, so
// that sessions close when their users fall silent, and count nothing. An
// event whose session would be closed already is late: dropped under
// -on-error skip (the default here) and counted as late.
//
// Without -brokers it starts an embedded Kafka (franz-go's kfake) in the
// process, creates the topics, loads sample events with timestamps spanning
// half an hour and one clock tick per partition an hour later, runs the
// topology until it processed everything, reads the output back with a
// read_committed consumer and prints each session as
// "user<TAB>start<TAB>end<TAB>count", sorted by user then start:
//
//	go run ./examples/sessions
//
// With -brokers it is a long-running processor binary: it runs until SIGINT
// or SIGTERM, and several copies with the same -app share the partitions.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/sluicehq/sluice/examples/internal/cli"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sessions:", err)
		os.Exit(1)
	}
}

type config struct {
	cli.Common
	events     string
	output     string
	gap, grace time.Duration
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	c.Register(fs, cli.Defaults{App: "sessions", Policy: "skip", PolicyNote: "an event later than the grace", Result: "the sessions"})
	fs.StringVar(&c.events, "events", "user-events", "input `topic` of user activity: key = user, value = event; an empty key is a clock tick")
	fs.StringVar(&c.output, "output", "user-sessions", "output `topic`: key = user, value = a closed session as \"start end count\"")
	fs.DurationVar(&c.gap, "gap", 5*time.Minute, "a session ends after this long without an event of its user")
	fs.DurationVar(&c.grace, "grace", 5*time.Minute, "how long after stream time passes a session's last event + gap the session stays open to out-of-order events")
	if help, err := c.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(c.events, c.output, c.gap, c.grace)
	if err != nil {
		return err
	}
	if c.PrintDescription(stdout, topo) {
		return nil
	}

	logger := c.Logger(stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if c.Brokers == "" {
		return runEmbedded(ctx, c, topo, stdout, logger)
	}

	return c.Serve(ctx, topo, logger)
}
