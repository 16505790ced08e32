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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/processor"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
}

type config struct {
	brokers        string
	input          string
	output         string
	app            string
	stateDir       string
	instanceID     string
	commitInterval time.Duration
	guarantee      string
	policy         string
	partitions     int
	describe       describeFlag
	verbose        bool
	timeout        time.Duration
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wordcount", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]`; empty: run on an embedded broker and print the counts")
	fs.StringVar(&c.input, "input", "lines", "input `topic` of text lines")
	fs.StringVar(&c.output, "output", "word-counts", "output `topic`: key = word, value = running count as decimal text")
	fs.StringVar(&c.app, "app", "wordcount", "application id: prefixes consumer groups, transactional ids and internal topics")
	fs.StringVar(&c.stateDir, "state-dir", "", "state `directory` (default: under the user's cache directory)")
	fs.StringVar(&c.instanceID, "instance-id", "", "instance id for static membership and transactional ids (default: from host name and state directory)")
	fs.DurationVar(&c.commitInterval, "commit-interval", 100*time.Millisecond, "how long one transaction gathers records")
	fs.StringVar(&c.guarantee, "guarantee", "exactly-once", "delivery guarantee: exactly-once, at-least-once or at-most-once")
	fs.StringVar(&c.policy, "on-error", "fail", "what to do with a record that cannot be processed: fail, skip or dead-letter")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of the input and output topics the embedded demo creates")
	fs.Var(&c.describe, "describe", "print the topology and exit: -describe (text) or -describe=dot (Graphviz)")
	fs.BoolVar(&c.verbose, "v", false, "log at info level (debug with KAFKA_DEBUG=1)")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "embedded demo: give up waiting for the counts after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}

	// Check the flags that name values before starting anything.
	if _, err := processor.ParseGuarantee(c.guarantee); err != nil {
		return err
	}
	if _, err := processor.ParsePolicy(c.policy); err != nil {
		return err
	}
	topo, err := Topology(c.input, c.output)
	if err != nil {
		return err
	}
	switch c.describe {
	case "text":
		fmt.Fprint(stdout, topo)
		return nil
	case "dot":
		fmt.Fprint(stdout, topo.DOT())
		return nil
	}

	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	if os.Getenv("KAFKA_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if c.brokers == "" {
		return runEmbedded(ctx, c, topo, stdin, stdout, logger)
	}

	if c.stateDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no -state-dir given and no user cache directory: %w", err)
		}
		c.stateDir = filepath.Join(dir, "sluice", c.app)
	}
	p, err := newProcessor(c, topo, strings.Split(c.brokers, ","), logger)
	if err != nil {
		return err
	}
	logger.Info("running", "app", c.app, "instance", p.InstanceID(), "brokers", c.brokers)
	if err := p.Run(ctx); err != nil {
		return err
	}
	return nil
}

func newProcessor(c config, topo topology, brokers []string, logger *slog.Logger) (*processor.Processor, error) {
	g, err := processor.ParseGuarantee(c.guarantee)
	if err != nil {
		return nil, err
	}
	pol, err := processor.ParsePolicy(c.policy)
	if err != nil {
		return nil, err
	}
	opts := []processor.Opt{
		processor.Brokers(brokers...),
		processor.ApplicationID(c.app),
		processor.StateDir(c.stateDir),
		processor.CommitInterval(c.commitInterval),
		processor.WithGuarantee(g),
		processor.ErrorPolicy(pol),
		processor.Logger(logger),
	}
	if c.instanceID != "" {
		opts = append(opts, processor.InstanceID(c.instanceID))
	}
	if os.Getenv("SLUICE_TEST_TIMEOUTS") != "" {
		// The test profile: short timeouts so crash tests recover fast.
		opts = append(opts,
			processor.SessionTimeout(6*time.Second),
			processor.HeartbeatInterval(500*time.Millisecond),
			processor.RebalanceTimeout(10*time.Second),
			processor.TransactionTimeout(10*time.Second),
		)
	}
	return processor.New(topo, opts...)
}

var errTimeout = errors.New("timed out")

// describeFlag is -describe: a boolean flag (-describe prints the text form)
// that also takes a format, -describe=text or -describe=dot. "" means off.
type describeFlag string

func (f *describeFlag) String() string { return string(*f) }

// IsBoolFlag lets -describe stand alone, as it did when it was a bool.
func (f *describeFlag) IsBoolFlag() bool { return true }

func (f *describeFlag) Set(v string) error {
	switch v {
	case "true", "text":
		*f = "text"
	case "dot":
		*f = "dot"
	case "false":
		*f = ""
	default:
		return fmt.Errorf("unknown format %q: use -describe, -describe=text or -describe=dot", v)
	}
	return nil
}
