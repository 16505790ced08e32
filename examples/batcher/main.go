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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/examples/internal/cli"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "batcher:", err)
		os.Exit(1)
	}
}

type config struct {
	cli.Common
	input, output, batches string
	interval               time.Duration
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("batcher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	c.Register(fs, cli.Defaults{App: "batcher", Policy: "fail", Result: "the released items"})
	fs.StringVar(&c.input, "input", "items", "input `topic`: key = item id, value = payload")
	fs.StringVar(&c.output, "output", "batched-items", "output `topic` of released items: key = id, value = \"<batch> <payload>\"")
	fs.StringVar(&c.batches, "batches", "batches", "output `topic` of batch summaries: key = \"<partition>-<n>\", value = number of items")
	fs.DurationVar(&c.interval, "interval", time.Second, "wall-clock time between releases of a partition's buffer (at least 1ms)")
	if help, err := c.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(c.input, c.output, c.batches, c.interval)
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
