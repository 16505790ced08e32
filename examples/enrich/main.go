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
	"github.com/sluicehq/sluice/examples/internal/cli"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
}

type config struct {
	cli.Common
	views  string
	users  string
	output string
	grace  time.Duration
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enrich", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	c.Register(fs, cli.Defaults{App: "enrich", Policy: "skip", PolicyNote: "a page view later than its window's grace", Result: "the counts"})
	fs.StringVar(&c.views, "views", "page-views", "input `topic` of page views: key = user id, value = page")
	fs.StringVar(&c.users, "users", "users", "input `topic` of users, read as a table (compacted): key = user id, value = country")
	fs.StringVar(&c.output, "output", "views-per-country", "output `topic`: key = country@window-start, value = the window's running count as decimal text")
	fs.DurationVar(&c.grace, "grace", 10*time.Minute, "how long after its end a window still takes late page views (it must cover the disorder of the views' timestamps)")
	if help, err := c.Parse(fs, args); help || err != nil {
		return err
	}

	topo, err := Topology(c.views, c.users, c.output, c.grace)
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
