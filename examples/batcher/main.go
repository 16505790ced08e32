// Command batcher releases a stream in batches on a wall-clock timer,
// exactly-once: every record of -input (key = item id, value = payload) is
// buffered in a store of its partition's task, and every -interval of wall
// time (stream.Every with stream.WallClock) a timer releases the task's
// buffer as one batch: each buffered item goes to -output (key = id, value
// = "<batch> <payload>"), and a summary of the batch to -batches (key = the
// batch, "<partition>-<n>", n counting the partition's batches from 1;
// value = its number of items). The timer fires whether records arrive or
// not, and its effects commit in the transaction of the cycle that fired
// it: a crash never loses a buffered item nor releases it twice. Useful in
// front of a consumer that prefers few large deliveries to a steady trickle.
//
// Without -brokers it starts an embedded Kafka (franz-go's kfake) in the
// process, creates the topics, loads sample orders, runs the topology until
// every order was released, reads the outputs back with a read_committed
// consumer and prints each item as "id<TAB>payload", sorted by id, and how
// many batches released them (which depends on the clock):
//
//	go run ./examples/batcher
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
		fmt.Fprintln(os.Stderr, "batcher:", err)
		os.Exit(1)
	}
}

// topics are the topics the batcher reads and writes.
type topics struct {
	input, output, batches string
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("batcher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cli.Flags
	f.Register(fs, cli.Defaults{App: "batcher", OnError: "fail", Result: "the released items"})
	var t topics
	fs.StringVar(&t.input, "input", "items", "input `topic`: key = item id, value = payload")
	fs.StringVar(&t.output, "output", "batched-items", "output `topic` of released items: key = id, value = \"<batch> <payload>\"")
	fs.StringVar(&t.batches, "batches", "batches", "output `topic` of batch summaries: key = \"<partition>-<n>\", value = number of items")
	interval := fs.Duration("interval", time.Second, "wall-clock time between releases of a partition's buffer (at least 1ms)")
	if help, err := f.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(t.input, t.output, t.batches, *interval)
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
		// No -brokers: sample orders on an embedded Kafka (embedded.go).
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
