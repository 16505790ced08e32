package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/stream"
)

// sampleUsers are the demo's users: id and country.
var sampleUsers = [][2]string{
	{"alice", "de"}, {"bob", "fr"}, {"carol", "de"}, {"dave", "us"}, {"erin", "fr"}, {"frank", "us"},
}

// sampleBase is the event time of the demo's first page view.
var sampleBase = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// sampleView is a page view of the demo, at sampleBase + at.
type sampleView struct {
	user, page string
	at         time.Duration
}

// sampleViews span four minutes; "mallory" is no user, so her views are
// dropped by the join.
var sampleViews = []sampleView{
	{"alice", "/", 5 * time.Second},
	{"bob", "/", 12 * time.Second},
	{"carol", "/docs", 30 * time.Second},
	{"mallory", "/admin", 31 * time.Second},
	{"dave", "/", 59*time.Second + 999*time.Millisecond},
	{"alice", "/docs", time.Minute}, // exactly at a window's end: the next window
	{"erin", "/", 70 * time.Second},
	{"frank", "/pricing", 95 * time.Second},
	{"bob", "/docs", 110 * time.Second},
	{"carol", "/", 150 * time.Second},
	{"alice", "/pricing", 160 * time.Second},
	{"mallory", "/", 170 * time.Second},
	{"dave", "/docs", 200 * time.Second},
	{"erin", "/pricing", 210 * time.Second},
	{"frank", "/", 225 * time.Second},
	{"dave", "/pricing", 239 * time.Second},
}

// runEmbedded runs the enrichment on an in-process Kafka: it loads the users
// and runs the processor until it has read them all into the table (so that
// no page view is joined before its user is known), then loads the page
// views and waits until both stages processed everything, reads the output
// back with a read_committed consumer, and prints the final counts.
func runEmbedded(ctx context.Context, f cli.Flags, topo *stream.Topology, t topics, stdout io.Writer, logger *slog.Logger) error {
	demo, err := cli.StartDemo("enrich", f.StateDir)
	if err != nil {
		return err
	}
	defer demo.Close()
	// The sample views carry fixed event timestamps (2024): without
	// retention.ms=-1 a broker's time retention would delete them.
	compact, forever := "compact", "-1"
	if err := demo.CreateTopics(ctx, f.Partitions, map[string]*string{"cleanup.policy": &compact}, t.users); err != nil {
		return err
	}
	if err := demo.CreateTopics(ctx, f.Partitions, map[string]*string{"retention.ms": &forever}, t.views, t.output); err != nil {
		return err
	}
	cl, err := demo.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	users := make([]*kgo.Record, len(sampleUsers))
	for i, u := range sampleUsers {
		users[i] = &kgo.Record{Topic: t.users, Key: []byte(u[0]), Value: []byte(u[1])}
	}
	if err := cl.ProduceSync(ctx, users...).FirstErr(); err != nil {
		return fmt.Errorf("loading users: %w", err)
	}

	f.Brokers, f.StateDir = demo.Brokers, demo.StateDir
	p, err := newProcessor(topo, f, logger)
	if err != nil {
		return err
	}
	demo.Run(ctx, p.Run)
	// The stage "views" reads both the users and the page views: first
	// every user, then every view, and the stage "by-country" every record
	// the join emitted.
	nUsers := int64(len(users))
	err = demo.WaitFor(ctx, func() bool { return p.Metrics().Stages["views"].Records == nUsers }, f.Timeout, "the counts")
	if err == nil {
		views := make([]*kgo.Record, len(sampleViews))
		for i, v := range sampleViews {
			views[i] = &kgo.Record{Topic: t.views, Key: []byte(v.user), Value: []byte(v.page), Timestamp: sampleBase.Add(v.at)}
		}
		if err := cl.ProduceSync(ctx, views...).FirstErr(); err != nil {
			return fmt.Errorf("loading page views: %w", err)
		}
		finished := func() bool {
			m := p.Metrics().Stages
			return m["views"].Records == nUsers+int64(len(views)) && m["by-country"].Records == m["views"].Emitted
		}
		err = demo.WaitFor(ctx, finished, f.Timeout, "the counts")
	}
	if runErr := demo.Stop(); runErr != nil {
		return runErr
	}
	if err != nil {
		return err
	}
	counts, err := demo.ReadCounts(ctx, t.output)
	if err != nil {
		return err
	}
	type wc struct {
		start, country string
		count          int64
	}
	var out []wc
	for k, n := range counts {
		country, start, ok := strings.Cut(k, "@")
		if !ok {
			return fmt.Errorf("output key %q is not country@start", k)
		}
		out = append(out, wc{start, country, n})
	}
	slices.SortFunc(out, func(a, b wc) int {
		if c := strings.Compare(a.start, b.start); c != 0 {
			return c
		}
		return strings.Compare(a.country, b.country)
	})
	bw := bufio.NewWriter(stdout)
	for _, e := range out {
		fmt.Fprintf(bw, "%s\t%s\t%d\n", e.start, e.country, e.count)
	}
	return bw.Flush()
}
