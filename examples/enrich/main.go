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
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
}

// topics are the topics the enrichment reads and writes.
type topics struct {
	views, users, output string
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enrich", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cli.Flags
	f.Register(fs, cli.Defaults{App: "enrich", OnError: "skip", PolicyNote: "a page view later than its window's grace", Result: "the counts"})
	var t topics
	fs.StringVar(&t.views, "views", "page-views", "input `topic` of page views: key = user id, value = page")
	fs.StringVar(&t.users, "users", "users", "input `topic` of users, read as a table (compacted): key = user id, value = country")
	fs.StringVar(&t.output, "output", "views-per-country", "output `topic`: key = country@window-start, value = the window's running count as decimal text")
	grace := fs.Duration("grace", 10*time.Minute, "how long after its end a window still takes late page views (it must cover the disorder of the views' timestamps)")
	if help, err := f.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(t.views, t.users, t.output, *grace)
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
		// No -brokers: sample users and views on an embedded Kafka
		// (embedded.go).
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
