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
	"github.com/sluicehq/sluice/examples/internal/cli"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

type config struct {
	cli.Common
	input  string
	output string
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wordcount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	c.Register(fs, cli.Defaults{App: "wordcount", Policy: "fail", PolicyNote: "", Result: "the counts"})
	fs.StringVar(&c.input, "input", "lines", "input `topic` of text lines")
	fs.StringVar(&c.output, "output", "word-counts", "output `topic`: key = word, value = running count as decimal text")
	if help, err := c.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(c.input, c.output)
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
		return runEmbedded(ctx, c, topo, stdin, stdout, logger)
	}

	return c.Serve(ctx, topo, logger)
}
