// Command wordcount counts words exactly-once: lines -> words -> a repartition
// by word -> a running count per word in a Pebble store -> an output topic
// whose key is the word and whose value is its count as decimal text.
//
// Without -brokers it starts an embedded Kafka (franz-go's kfake) in the
// process, reads lines from standard input when it is not a terminal (a
// built-in sample text otherwise), runs the topology, reads the output back
// with a read_committed consumer and prints each word's final count as
// "word<TAB>count", sorted by count (descending) then word:
//
//	printf 'a b a\nc a\n' | go run ./examples/wordcount
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

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wordcount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cli.Flags
	f.Register(fs, cli.Defaults{App: "wordcount", OnError: "fail", Result: "the counts"})
	input := fs.String("input", "lines", "input `topic` of text lines")
	output := fs.String("output", "word-counts", "output `topic`: key = word, value = running count as decimal text")
	if help, err := f.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(*input, *output)
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
		// No -brokers: count stdin on an embedded Kafka (embedded.go).
		return runEmbedded(ctx, f, topo, *input, *output, stdin, stdout, logger)
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
