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
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sessions:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cli.Flags
	f.Register(fs, cli.Defaults{App: "sessions", OnError: "skip", PolicyNote: "an event later than the grace", Result: "the sessions"})
	events := fs.String("events", "user-events", "input `topic` of user activity: key = user, value = event; an empty key is a clock tick")
	output := fs.String("output", "user-sessions", "output `topic`: key = user, value = a closed session as \"start end count\"")
	gap := fs.Duration("gap", 5*time.Minute, "a session ends after this long without an event of its user")
	grace := fs.Duration("grace", 5*time.Minute, "how long after stream time passes a session's last event + gap the session stays open to out-of-order events")
	if help, err := f.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(*events, *output, *gap, *grace)
	if err != nil {
		return err
	}
	if f.Describe(stdout, topo) {
		return nil
	}

	logger := f.Logger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if len(f.Brokers) == 0 {
		// No -brokers: sample events on an embedded Kafka (embedded.go).
		return runEmbedded(ctx, f, topo, *events, *output, stdout, logger)
	}
	p, err := newProcessor(topo, f, logger)
	if err != nil {
		return err
	}
	if done, err := f.PrintTopics(ctx, stdout, p); done {
		return err // -print-topics: the internal topics, for sluice topics
	}
	logger.Info("running", "app", f.App, "instance", p.InstanceID(), "brokers", f.Brokers)
	return p.Run(ctx)
}

// newProcessor configures the runtime for topo from the flags.
func newProcessor(topo *stream.Topology, f cli.Flags, logger *slog.Logger) (*processor.Processor, error) {
	return processor.New(topo,
		processor.Brokers(f.Brokers...),
		processor.ApplicationID(f.App),
		processor.StateDir(f.StateDir),
		processor.InstanceID(f.InstanceID),
		processor.WithGuarantee(f.Guarantee),
		processor.ErrorPolicy(f.OnError),
		processor.CommitInterval(f.CommitInterval),
		processor.SessionTimeout(f.SessionTimeout),
		processor.HeartbeatInterval(f.HeartbeatInterval),
		processor.RebalanceTimeout(f.RebalanceTimeout),
		processor.TransactionTimeout(f.TransactionTimeout),
		processor.TLS(f.Security.TLS),
		processor.SASL(f.Security.SASL),
		processor.Logger(logger),
		processor.AdminAddr(f.AdminAddr), // "" serves nothing
	)
}
