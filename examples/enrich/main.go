// Command enrich joins page views with a table of users and counts the views
// per country per minute of event time, exactly-once: users (a compacted
// topic, key = user id, value = country) are read as a table; each page view
// (key = user id, value = page) is joined with it in the stage "views"
// (views of unknown users are dropped), re-keyed by country through a
// repartition topic, and counted in tumbling windows of one minute with a
// grace period (-grace) in the stage "by-country". Every update of a
// window's count goes to the output topic with the key "country@start"
// (start in RFC 3339, UTC) and the count as decimal text: the last record of
// a key is the window's final count. The windows follow the page views'
// record timestamps; a view later than its window's grace is dropped under
// -on-error skip (the default here) and counted as late.
//
// Without -brokers it starts an embedded Kafka (franz-go's kfake) in the
// process, creates the topics, loads sample users, then sample page views
// with timestamps spanning a few minutes, runs the topology until both
// stages processed everything, reads the output back with a read_committed
// consumer and prints the final count of each country and minute as
// "start<TAB>country<TAB>count", sorted by start then country:
//
//	go run ./examples/enrich
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
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
}

type config struct {
	brokers        string
	views          string
	users          string
	output         string
	grace          time.Duration
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

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enrich", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]`; empty: run on an embedded broker and print the counts")
	fs.StringVar(&c.views, "views", "page-views", "input `topic` of page views: key = user id, value = page")
	fs.StringVar(&c.users, "users", "users", "input `topic` of users, read as a table (compacted): key = user id, value = country")
	fs.StringVar(&c.output, "output", "views-per-country", "output `topic`: key = country@window-start, value = the window's running count as decimal text")
	fs.DurationVar(&c.grace, "grace", 10*time.Minute, "how long after its end a window still takes late page views (it must cover the disorder of the views' timestamps)")
	fs.StringVar(&c.app, "app", "enrich", "application id: prefixes consumer groups, transactional ids and internal topics")
	fs.StringVar(&c.stateDir, "state-dir", "", "state `directory` (default: under the user's cache directory)")
	fs.StringVar(&c.instanceID, "instance-id", "", "instance id for static membership and transactional ids (default: from host name and state directory)")
	fs.DurationVar(&c.commitInterval, "commit-interval", 100*time.Millisecond, "how long one transaction gathers records")
	fs.StringVar(&c.guarantee, "guarantee", "exactly-once", "delivery guarantee: exactly-once, at-least-once or at-most-once")
	fs.StringVar(&c.policy, "on-error", "skip", "what to do with a record that cannot be processed (a page view later than its window's grace, too): fail, skip or dead-letter")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of the topics the embedded demo creates")
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
	topo, err := Topology(c.views, c.users, c.output, c.grace)
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
		return runEmbedded(ctx, c, topo, stdout, logger)
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
