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
	user, event string
	at          time.Duration
}

// sampleEvents, in the order they are produced. With the default gap (5m)
// and grace (5m): alice has a session 12:00:00-12:06:30 of three events and
// one of one at 12:20; bob two of one event each; carol's event at 12:04,
// produced after her event at 12:08, merges her two sessions into one of
// three events.
var sampleEvents = []sampleEvent{
	{"alice", "login", 0},
	{"carol", "login", 0},
	{"bob", "login", time.Minute},
	{"alice", "search", 2 * time.Minute},
	{"alice", "logout", 6*time.Minute + 30*time.Second},
	{"carol", "logout", 8 * time.Minute},
	{"carol", "search", 4 * time.Minute}, // late, within the grace: merges
	{"alice", "login", 20 * time.Minute},
	{"bob", "login", 30 * time.Minute},
}

// runEmbedded runs the sessions on an in-process Kafka: it loads the events
// and a clock tick an hour after the last one into every partition (so that
// every session closes), runs the processor until it processed them all,
// reads the output back with a read_committed consumer and prints the
// sessions.
func runEmbedded(ctx context.Context, f cli.Flags, topo *stream.Topology, events, output string, stdout io.Writer, logger *slog.Logger) error {
	demo, err := cli.StartDemo("sessions", f.StateDir)
	if err != nil {
		return err
	}
	defer demo.Close()
	// The sample events carry fixed event timestamps: without
	// retention.ms=-1 a broker's time retention would delete them.
	forever := "-1"
	if err := demo.CreateTopics(ctx, f.Partitions, map[string]*string{"retention.ms": &forever}, events, output); err != nil {
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
		recs = append(recs, &kgo.Record{Topic: events, Key: []byte(e.user), Value: []byte(e.event), Timestamp: sampleBase.Add(e.at)})
	}
	tick := sampleBase.Add(sampleEvents[len(sampleEvents)-1].at + time.Hour)
	for p := 0; p < f.Partitions; p++ {
		recs = append(recs, &kgo.Record{Topic: events, Partition: int32(p), Value: []byte("tick"), Timestamp: tick})
	}
	// One by one, in order: carol's late event must follow her later one.
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
	finished := func() bool { return p.Metrics().Stages["events"].Records == int64(len(recs)) }
	err = demo.RunUntil(ctx, p.Run, finished, f.Timeout, "the sessions")
	if err != nil {
		return err
	}
	sessions, err := readSessions(ctx, demo, output)
	if err != nil {
		return err
	}
	slices.SortFunc(sessions, func(a, b userSession) int {
		if c := strings.Compare(a.user, b.user); c != 0 {
			return c
		}
		return a.Start.Compare(b.Start)
	})
	bw := bufio.NewWriter(stdout)
	for _, s := range sessions {
		fmt.Fprintf(bw, "%s\t%s\t%s\t%d\n", s.user, s.Start.Format(timeFormat), s.End.Format(timeFormat), s.Count)
	}
	return bw.Flush()
}

type userSession struct {
	user string
	Session
}

// readSessions reads the output topic to its end with a read_committed
// consumer and returns every session in it.
func readSessions(ctx context.Context, demo *cli.Demo, topic string) ([]userSession, error) {
	recs, err := demo.ReadTopic(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []userSession
	for _, r := range recs {
		s, err := ParseSession(string(r.Value))
		if err != nil {
			return nil, fmt.Errorf("output record %q: %w", r.Key, err)
		}
		out = append(out, userSession{string(r.Key), s})
	}
	return out, nil
}
