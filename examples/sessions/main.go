// Command sessions groups each user's activity into sessions, exactly-once:
// events (key = user, value = event) are grouped by user, without a
// repartition, into session windows of event time (the records' timestamps)
// that end after -gap without an event of the user; an event up to -grace
// late still extends or merges sessions. Each session's count of events is
// emitted once, when the session closes (SuppressUntilWindowCloses: stream
// time past its last event + gap + grace), so a reader sees final sessions
// only, never an update of one: key = user, value = "start end count"
// (times in RFC 3339 with milliseconds, UTC; end is the last event's time).
// Records with an empty key are clock ticks: they advance stream time, so
// that sessions close when their users fall silent, and count nothing. An
// event later than the grace is dropped under -on-error skip (the default
// here) and counted as late.
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
		fmt.Fprintln(os.Stderr, "sessions:", err)
		os.Exit(1)
	}
}

type config struct {
	brokers        string
	events         string
	output         string
	gap, grace     time.Duration
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
	fs := flag.NewFlagSet("sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]`; empty: run on an embedded broker and print the sessions")
	fs.StringVar(&c.events, "events", "user-events", "input `topic` of user activity: key = user, value = event; an empty key is a clock tick")
	fs.StringVar(&c.output, "output", "user-sessions", "output `topic`: key = user, value = a closed session as \"start end count\"")
	fs.DurationVar(&c.gap, "gap", 5*time.Minute, "a session ends after this long without an event of its user")
	fs.DurationVar(&c.grace, "grace", 5*time.Minute, "how long behind stream time an event may be and still extend or merge sessions")
	fs.StringVar(&c.app, "app", "sessions", "application id: prefixes consumer groups, transactional ids and internal topics")
	fs.StringVar(&c.stateDir, "state-dir", "", "state `directory` (default: under the user's cache directory)")
	fs.StringVar(&c.instanceID, "instance-id", "", "instance id for static membership and transactional ids (default: from host name and state directory)")
	fs.DurationVar(&c.commitInterval, "commit-interval", 100*time.Millisecond, "how long one transaction gathers records")
	fs.StringVar(&c.guarantee, "guarantee", "exactly-once", "delivery guarantee: exactly-once, at-least-once or at-most-once")
	fs.StringVar(&c.policy, "on-error", "skip", "what to do with a record that cannot be processed (an event later than the grace, too): fail, skip or dead-letter")
	fs.IntVar(&c.partitions, "partitions", 4, "partitions of the topics the embedded demo creates")
	fs.Var(&c.describe, "describe", "print the topology and exit: -describe (text) or -describe=dot (Graphviz)")
	fs.BoolVar(&c.verbose, "v", false, "log at info level (debug with KAFKA_DEBUG=1)")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Minute, "embedded demo: give up waiting for the sessions after this long")
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
	topo, err := Topology(c.events, c.output, c.gap, c.grace)
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
