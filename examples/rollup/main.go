// Command rollup counts order outcomes per minute and rolls the minutes up
// into hours, exactly-once: events (key = account, value "order" or
// "payment"; any other value is a clock tick) are split into orders and
// payments, and a left join within -within pairs every order with its
// account's payments ("paid"); an order that none paired with is "unpaid",
// emitted once it can no longer pair (stream time past it by 2 × -within),
// with its own, older timestamp. The outcomes are counted per account in
// -minute windows (grace -minute-grace), held back until each window closes
// (SuppressUntilWindowCloses) and written once to -minutes ("start end paid
// unpaid"); the final minutes are re-keyed by account (a repartition) and
// summed per -hour window, written once to -hours when the hour closes.
//
// An unpaid outcome whose minute has closed by the time it is emitted is
// dropped by the minute windows and counted in the stage's Late metric,
// without failing the record that moved stream time (a grace shorter than
// 2 × -within makes that happen to orders late in their minute). An input
// event too late for the join or its window goes to -on-error (skip here).
//
// Without -brokers it starts an embedded Kafka (franz-go's kfake) in the
// process, creates the topics, loads sample events and clock ticks, runs
// the topology until it processed everything, reads both outputs back with
// a read_committed consumer and prints each window as
// "minute|hour<TAB>account<TAB>start<TAB>end<TAB>paid<TAB>unpaid":
//
//	go run ./examples/rollup
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
		fmt.Fprintln(os.Stderr, "rollup:", err)
		os.Exit(1)
	}
}

// topics are the topics the roll-up reads and writes.
type topics struct {
	events, minutes, hours string
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rollup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cli.Flags
	f.Register(fs, cli.Defaults{App: "rollup", OnError: "skip", PolicyNote: "an event too late for the join or its window", Result: "the windows"})
	var t topics
	var pa Params
	fs.StringVar(&t.events, "events", "account-events", "input `topic`: key = account, value = \"order\" or \"payment\"; any other value is a clock tick")
	fs.StringVar(&t.minutes, "minutes", "account-minutes", "output `topic` of closed minute windows: key = account, value = \"start end paid unpaid\"")
	fs.StringVar(&t.hours, "hours", "account-hours", "output `topic` of closed hour windows: key = account, value = \"start end paid unpaid\"")
	fs.DurationVar(&pa.Within, "within", 30*time.Second, "an order and a payment at most this far apart pair")
	fs.DurationVar(&pa.Minute, "minute", time.Minute, "size of the first windows")
	fs.DurationVar(&pa.MinuteGrace, "minute-grace", 10*time.Second, "grace period of the first windows")
	fs.DurationVar(&pa.Hour, "hour", time.Hour, "size of the roll-up windows")
	fs.DurationVar(&pa.HourGrace, "hour-grace", time.Minute, "grace period of the roll-up windows")
	if help, err := f.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(t.events, t.minutes, t.hours, pa)
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
		return runEmbedded(ctx, f, topo, t, stdout, logger)
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
