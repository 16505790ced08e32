// Package cli holds what the example processor binaries share, and only
// they may import (it sits under examples/internal): the flags
// every processor binary takes (their names are a public interface), the
// checks made before anything starts, the logger, the -describe flag, and
// the long-running mode with -brokers.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// ErrTimeout is wrapped by WaitFor's error when the condition did not hold in
// time.
var ErrTimeout = errors.New("timed out")

// Defaults are the per-binary defaults and wording of the common flags.
type Defaults struct {
	App        string // -app
	Policy     string // -on-error
	PolicyNote string // what else goes to the policy, for -on-error's help ("" if nothing)
	Result     string // what the embedded demo prints, for -brokers' and -timeout's help
}

// Common is the flags every processor binary takes.
type Common struct {
	Brokers        string
	App            string
	StateDir       string
	InstanceID     string
	CommitInterval time.Duration
	Guarantee      string
	Policy         string
	Partitions     int
	Describe       DescribeFlag
	Verbose        bool
	Timeout        time.Duration
}

// Register defines the common flags on fs.
func (c *Common) Register(fs *flag.FlagSet, d Defaults) {
	fs.StringVar(&c.Brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]`; empty: run on an embedded broker and print "+d.Result)
	fs.StringVar(&c.App, "app", d.App, "application id: prefixes consumer groups, transactional ids and internal topics")
	fs.StringVar(&c.StateDir, "state-dir", "", "state `directory` (default: under the user's cache directory)")
	fs.StringVar(&c.InstanceID, "instance-id", "", "instance id for static membership and transactional ids (default: from host name and state directory)")
	fs.DurationVar(&c.CommitInterval, "commit-interval", 100*time.Millisecond, "how long one transaction gathers records")
	fs.StringVar(&c.Guarantee, "guarantee", "exactly-once", "delivery guarantee: exactly-once, at-least-once or at-most-once")
	note := ""
	if d.PolicyNote != "" {
		note = " (" + d.PolicyNote + ", too)"
	}
	fs.StringVar(&c.Policy, "on-error", d.Policy, "what to do with a record that cannot be processed"+note+": fail, skip or dead-letter")
	fs.IntVar(&c.Partitions, "partitions", 4, "partitions of the topics the embedded demo creates")
	fs.Var(&c.Describe, "describe", "print the topology and exit: -describe (text) or -describe=dot (Graphviz)")
	fs.BoolVar(&c.Verbose, "v", false, "log at info level (debug with KAFKA_DEBUG=1)")
	fs.DurationVar(&c.Timeout, "timeout", 2*time.Minute, "embedded demo: give up waiting for "+d.Result+" after this long")
}

// Parse parses args and checks the flags that name values, before anything
// starts. help reports -h (usage printed, nothing to do).
func (c *Common) Parse(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	if _, err := processor.ParseGuarantee(c.Guarantee); err != nil {
		return false, err
	}
	if _, err := processor.ParsePolicy(c.Policy); err != nil {
		return false, err
	}
	return false, nil
}

// PrintDescription prints the topology when -describe was given and reports
// whether it did.
func (c *Common) PrintDescription(w io.Writer, topo *stream.Topology) bool {
	switch c.Describe {
	case "text":
		fmt.Fprint(w, topo)
	case "dot":
		fmt.Fprint(w, topo.DOT())
	default:
		return false
	}
	return true
}

// Logger returns the binary's logger: warnings, info with -v, debug with
// KAFKA_DEBUG set.
func (c *Common) Logger(w io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if c.Verbose {
		level = slog.LevelInfo
	}
	if os.Getenv("KAFKA_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// NewProcessor returns a processor of topo configured by the flags. With
// SLUICE_TEST_TIMEOUTS set it uses the test profile: short session,
// heartbeat, rebalance and transaction timeouts, so crash tests recover fast.
func (c *Common) NewProcessor(topo *stream.Topology, brokers []string, logger *slog.Logger) (*processor.Processor, error) {
	g, err := processor.ParseGuarantee(c.Guarantee)
	if err != nil {
		return nil, err
	}
	pol, err := processor.ParsePolicy(c.Policy)
	if err != nil {
		return nil, err
	}
	opts := []processor.Opt{
		processor.Brokers(brokers...),
		processor.ApplicationID(c.App),
		processor.StateDir(c.StateDir),
		processor.CommitInterval(c.CommitInterval),
		processor.WithGuarantee(g),
		processor.ErrorPolicy(pol),
		processor.Logger(logger),
	}
	if c.InstanceID != "" {
		opts = append(opts, processor.InstanceID(c.InstanceID))
	}
	if os.Getenv("SLUICE_TEST_TIMEOUTS") != "" {
		opts = append(opts,
			processor.SessionTimeout(6*time.Second),
			processor.HeartbeatInterval(500*time.Millisecond),
			processor.RebalanceTimeout(10*time.Second),
			processor.TransactionTimeout(10*time.Second),
		)
	}
	return processor.New(topo, opts...)
}

// Serve runs topo as a long-running processor on -brokers until ctx is done
// (SIGINT or SIGTERM), with the state under the user's cache directory when
// no -state-dir was given.
func (c *Common) Serve(ctx context.Context, topo *stream.Topology, logger *slog.Logger) error {
	if c.StateDir == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no -state-dir given and no user cache directory: %w", err)
		}
		c.StateDir = filepath.Join(dir, "sluice", c.App)
	}
	p, err := c.NewProcessor(topo, strings.Split(c.Brokers, ","), logger)
	if err != nil {
		return err
	}
	logger.Info("running", "app", c.App, "instance", p.InstanceID(), "brokers", c.Brokers)
	return p.Run(ctx)
}

// WaitFor polls cond until it holds, the processor stopped (stopped is
// closed), ctx is done, or timeout passed; what names what is awaited, for
// the error.
func WaitFor(ctx context.Context, cond func() bool, timeout time.Duration, stopped <-chan struct{}, what string) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-stopped:
			return fmt.Errorf("processor stopped before %s were complete", what)
		case <-deadline:
			return fmt.Errorf("%w: %s were not complete after %v", ErrTimeout, what, timeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// DescribeFlag is -describe: a boolean flag (-describe prints the text form)
// that also takes a format, -describe=text or -describe=dot. "" means off.
type DescribeFlag string

func (f *DescribeFlag) String() string { return string(*f) }

// IsBoolFlag lets -describe stand alone.
func (f *DescribeFlag) IsBoolFlag() bool { return true }

// Set implements flag.Value.
func (f *DescribeFlag) Set(v string) error {
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
