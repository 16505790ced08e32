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

// sampleBase is the event time of the demo's first event.
var sampleBase = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// sampleEvent is an event of the demo, at sampleBase + at.
type sampleEvent struct {
	account, kind string
	at            time.Duration
}

// sampleEvents, in the order they are produced. With the defaults (within
// 30 s, minutes with 10 s grace): alice's order at 12:00:05 is paid; her
// orders at 12:00:50 and 12:01:05 are not, and are emitted unpaid when her
// partition's stream time passes them by a minute, at 12:02:07: the first
// after its minute closed (12:01:10), dropped as late; the second before
// its minute closes (12:02:10), counted. The record at 12:02:07 that moved
// stream time is processed as any other. Bob's order is paid.
var sampleEvents = []sampleEvent{
	{"alice", "order", 5 * time.Second},
	{"alice", "payment", 15 * time.Second},
	{"alice", "order", 50 * time.Second},
	{"alice", "order", 65 * time.Second},
	{"bob", "order", 90 * time.Second},
	{"bob", "payment", 105 * time.Second},
	{"alice", "order", 127 * time.Second},
	{"alice", "payment", 150 * time.Second},
	{"alice", "order", 59 * time.Minute},
	{"alice", "payment", 59*time.Minute + 10*time.Second},
}

// Closing returns, for every partition of a topic with the given count,
// what closes all its windows after its last event at last: a clock tick an
// hour later (closing every minute window and expiring every buffered
// order), then a paid order of an account of the partition (closers[p]),
// then a tick an hour after that, which releases that order's minute: the
// roll-up's stage sees its stream time pass every hour before. Records name
// their partition (ticks have no key).
func Closing(topic string, p int32, closer string, last time.Time) []*kgo.Record {
	t1, t2 := last.Add(time.Hour), last.Add(2*time.Hour)
	return []*kgo.Record{
		{Topic: topic, Partition: p, Value: []byte("tick"), Timestamp: t1},
		{Topic: topic, Partition: p, Key: []byte(closer), Value: []byte("order"), Timestamp: t1.Add(time.Second)},
		{Topic: topic, Partition: p, Key: []byte(closer), Value: []byte("payment"), Timestamp: t1.Add(2 * time.Second)},
		{Topic: topic, Partition: p, Value: []byte("tick"), Timestamp: t2},
	}
}

// Closers returns an account name per partition whose key Kafka's default
// partitioner puts there.
func Closers(topic string, partitions int) []string {
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	names := make([]string, partitions)
	for i, left := 0, partitions; left > 0; i++ {
		name := fmt.Sprintf("closer-%d", i)
		if p := part.Partition(&kgo.Record{Key: []byte(name)}, partitions); names[p] == "" {
			names[p] = name
			left--
		}
	}
	return names
}

// runEmbedded runs the roll-up on an in-process Kafka: it loads the events
// and, per partition, the records of Closing, runs the processor until it
// processed them all, reads both outputs back with a read_committed
// consumer and prints the windows.
func runEmbedded(ctx context.Context, f cli.Flags, topo *stream.Topology, t topics, stdout io.Writer, logger *slog.Logger) error {
	demo, err := cli.StartDemo("rollup", f.StateDir)
	if err != nil {
		return err
	}
	defer demo.Close()
	// The sample events carry fixed event timestamps: without
	// retention.ms=-1 a broker's time retention would delete them.
	forever := "-1"
	if err := demo.CreateTopics(ctx, f.Partitions, map[string]*string{"retention.ms": &forever}, t.events, t.minutes, t.hours); err != nil {
		return err
	}
	// Events go to the partition of their key (Kafka's default
	// partitioner, as the runtime expects); ticks to the partition they
	// name.
	cl, err := demo.Client(kgo.RecordPartitioner(cli.TickPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, e := range sampleEvents {
		recs = append(recs, &kgo.Record{Topic: t.events, Key: []byte(e.account), Value: []byte(e.kind), Timestamp: sampleBase.Add(e.at)})
	}
	last := sampleBase.Add(sampleEvents[len(sampleEvents)-1].at)
	for p, closer := range Closers(t.events, f.Partitions) {
		recs = append(recs, Closing(t.events, int32(p), closer, last)...)
	}
	// One by one, in order: each partition's stream time must move as
	// listed.
	for _, r := range recs {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return fmt.Errorf("loading events: %w", err)
		}
	}

	f.Brokers, f.StateDir = demo.Brokers, demo.StateDir
	p, err := newProcessor(topo, f, logger)
	if err != nil {
		return err
	}
	// Done when the events' stage has processed every record and the
	// roll-up stage every final minute (the closers' minutes are the last
	// ones its partitions get).
	finished := func() bool {
		m := p.Metrics().Stages
		return m["events"].Records == int64(len(recs)) && m["events"].Emitted > 0 &&
			m["minutes-by-account"].Records == m["events"].Emitted/2
	}
	err = demo.RunUntil(ctx, p.Run, finished, f.Timeout, "the windows")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(stdout)
	for _, out := range []struct{ name, topic string }{{"minute", t.minutes}, {"hour", t.hours}} {
		ws, err := readWindows(ctx, demo, out.topic)
		if err != nil {
			return err
		}
		for _, w := range ws {
			fmt.Fprintf(bw, "%s\t%s\t%s\t%s\t%d\t%d\n", out.name, w.account, w.Start.Format(timeFormat), w.End.Format(timeFormat), w.Paid, w.Unpaid)
		}
	}
	return bw.Flush()
}

type accountWindow struct {
	account string
	Window
}

// readWindows reads an output topic to its end with a read_committed
// consumer and returns its windows, sorted by account then start.
func readWindows(ctx context.Context, demo *cli.Demo, topic string) ([]accountWindow, error) {
	recs, err := demo.ReadTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []accountWindow
	for _, r := range recs {
		w, err := ParseWindow(string(r.Value))
		if err != nil {
			return nil, fmt.Errorf("output record %q: %w", r.Key, err)
		}
		out = append(out, accountWindow{string(r.Key), w})
	}
	slices.SortFunc(out, func(a, b accountWindow) int {
		if c := strings.Compare(a.account, b.account); c != 0 {
			return c
		}
		return a.Start.Compare(b.Start)
	})
	return out, nil
}
