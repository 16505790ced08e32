package cli

import (
	"context"
	"encoding/json"
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

// Defaults are the per-binary defaults and wording of the common flags.
type Defaults struct {
	App        string // -app
	OnError    string // -on-error
	PolicyNote string // what else goes to the policy, for -on-error's help ("" if nothing)
	Result     string // what the embedded demo prints, for -brokers' and -timeout's help
}

// Flags are the flags every example processor binary takes, parsed: each
// field but the demo's maps to one processor option.
type Flags struct {
	// Brokers is -brokers (or KAFKA_BROKERS) split at commas; empty means
	// the embedded demo.
	Brokers []string
	App     string
	// StateDir is -state-dir; after Parse with brokers and no -state-dir,
	// a directory under the user's cache directory. Empty for the demo
	// (StartDemo then makes a temporary one).
	StateDir       string
	InstanceID     string // "": the processor derives one
	CommitInterval time.Duration
	// AdminAddr is -admin-addr: where to serve the admin endpoints
	// (processor.AdminAddr); "" serves none.
	AdminAddr string
	Guarantee processor.Guarantee
	OnError   processor.Policy

	// The group and transaction timeouts; the defaults are the
	// processor's own.
	SessionTimeout     time.Duration
	HeartbeatInterval  time.Duration
	RebalanceTimeout   time.Duration
	TransactionTimeout time.Duration

	// Security is the TLS and SASL flags' (-tls*, -sasl-*), for
	// processor.TLS and processor.SASL.
	Security Security

	// The embedded demo's.
	Partitions int           // of the topics it creates
	Timeout    time.Duration // how long it waits for its result

	brokers, guarantee, onError string
	describe                    describeFlag
	verbose                     bool
	printTopics                 bool
}

// Register defines the common flags on fs.
func (f *Flags) Register(fs *flag.FlagSet, d Defaults) {
	fs.StringVar(&f.brokers, "brokers", os.Getenv("KAFKA_BROKERS"), "Kafka brokers `host:port[,host:port]`; empty: run on an embedded broker and print "+d.Result)
	fs.StringVar(&f.App, "app", d.App, "application id: prefixes consumer groups, transactional ids and internal topics")
	fs.StringVar(&f.StateDir, "state-dir", "", "state `directory` (default: under the user's cache directory)")
	fs.StringVar(&f.InstanceID, "instance-id", "", "instance id for static membership and transactional ids (default: from host name and state directory)")
	fs.StringVar(&f.AdminAddr, "admin-addr", "", "serve /metrics, /healthz, /readyz, /topology and /tasks over HTTP at `host:port` (e.g. :9464); empty: none")
	fs.DurationVar(&f.CommitInterval, "commit-interval", 100*time.Millisecond, "how long one transaction gathers records")
	fs.StringVar(&f.guarantee, "guarantee", "exactly-once", "delivery guarantee: exactly-once, at-least-once or at-most-once")
	note := ""
	if d.PolicyNote != "" {
		note = " (" + d.PolicyNote + ", too)"
	}
	fs.StringVar(&f.onError, "on-error", d.OnError, "what to do with a record that cannot be processed"+note+": fail, skip or dead-letter")
	fs.DurationVar(&f.SessionTimeout, "session-timeout", 45*time.Second, "group session timeout (Kafka's session.timeout.ms): how long a crashed instance keeps its partitions")
	fs.DurationVar(&f.HeartbeatInterval, "heartbeat-interval", 3*time.Second, "group heartbeat interval (Kafka's heartbeat.interval.ms)")
	fs.DurationVar(&f.RebalanceTimeout, "rebalance-timeout", time.Minute, "group rebalance timeout")
	fs.DurationVar(&f.TransactionTimeout, "transaction-timeout", 10*time.Second, "transaction timeout (Kafka's transaction.timeout.ms): how long a cut-off instance's transaction can hold readers back")
	f.Security.Register(fs)
	fs.IntVar(&f.Partitions, "partitions", 4, "partitions of the topics the embedded demo creates")
	fs.Var(&f.describe, "describe", "print the topology and exit: -describe (text) or -describe=dot (Graphviz)")
	fs.BoolVar(&f.printTopics, "print-topics", false, "print the internal topics the processor would create (JSON, for sluice topics --plan) and exit; needs -brokers: their partition counts follow the input topics'")
	fs.BoolVar(&f.verbose, "v", false, "log at info level (debug with KAFKA_DEBUG=1)")
	fs.DurationVar(&f.Timeout, "timeout", 2*time.Minute, "embedded demo: give up waiting for "+d.Result+" after this long")
}

// Parse parses args and checks the flags that name values, before anything
// starts. help reports -h (usage printed, nothing to do).
func (f *Flags) Parse(fs *flag.FlagSet, args []string) (help bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	if f.Guarantee, err = processor.ParseGuarantee(f.guarantee); err != nil {
		return false, err
	}
	if f.OnError, err = processor.ParsePolicy(f.onError); err != nil {
		return false, err
	}
	if err := f.Security.Parse(os.Getenv); err != nil {
		return false, err
	}
	f.Brokers = nil
	if f.brokers != "" {
		f.Brokers = strings.Split(f.brokers, ",")
	}
	if f.printTopics && len(f.Brokers) == 0 {
		return false, errors.New("-print-topics needs -brokers (or KAFKA_BROKERS): the internal topics' partition counts follow the input topics'")
	}
	if len(f.Brokers) > 0 && f.StateDir == "" && f.describe == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return false, fmt.Errorf("no -state-dir given and no user cache directory: %w", err)
		}
		f.StateDir = filepath.Join(dir, "sluice", f.App)
	}
	return false, nil
}

// Describe prints the topology when -describe was given and reports
// whether it did.
func (f *Flags) Describe(w io.Writer, topo *stream.Topology) bool {
	switch f.describe {
	case "text":
		fmt.Fprint(w, topo)
	case "dot":
		fmt.Fprint(w, topo.DOT())
	default:
		return false
	}
	return true
}

// PrintTopics writes the internal topics p would create as JSON
// (processor.TopicPlan, what sluice topics --plan reads) to w when
// -print-topics was given, and reports whether it was.
func (f *Flags) PrintTopics(ctx context.Context, w io.Writer, p *processor.Processor) (bool, error) {
	if !f.printTopics {
		return false, nil
	}
	plan, err := p.InternalTopics(ctx)
	if err != nil {
		return true, err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return true, enc.Encode(plan)
}

// Logger returns the binary's logger: warnings, info with -v, debug with
// KAFKA_DEBUG set.
func (f *Flags) Logger(w io.Writer) *slog.Logger {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	if os.Getenv("KAFKA_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// describeFlag is -describe: a boolean flag (-describe prints the text
// form) that also takes a format, -describe=text or -describe=dot. ""
// means off.
type describeFlag string

func (f *describeFlag) String() string { return string(*f) }

// IsBoolFlag lets -describe stand alone.
func (f *describeFlag) IsBoolFlag() bool { return true }

// Set implements flag.Value.
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
