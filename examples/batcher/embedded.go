package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/internal/cli"
	"github.com/sluicehq/sluice/stream"
)

// sampleOrders are the demo's input: order id and payload.
var sampleOrders = [][2]string{
	{"order-01", "2 espresso"},
	{"order-02", "1 croissant"},
	{"order-03", "3 latte"},
	{"order-04", "1 bagel"},
	{"order-05", "2 tea"},
	{"order-06", "1 muffin"},
	{"order-07", "4 cappuccino"},
	{"order-08", "1 scone"},
	{"order-09", "2 mocha"},
	{"order-10", "1 brownie"},
}

// runEmbedded runs the batcher on an in-process Kafka: it loads the sample
// orders, runs the processor until a read_committed reader has seen every
// order released, reads the batch summaries, and prints the items sorted by
// id and how many batches released them.
func runEmbedded(ctx context.Context, f cli.Flags, topo *stream.Topology, t topics, stdout io.Writer, logger *slog.Logger) error {
	demo, err := cli.StartDemo("batcher", f.StateDir)
	if err != nil {
		return err
	}
	defer demo.Close()
	if err := demo.CreateTopics(ctx, f.Partitions, nil, t.input, t.output, t.batches); err != nil {
		return err
	}
	cl, err := demo.Client(kgo.DefaultProduceTopic(t.input))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, o := range sampleOrders {
		recs = append(recs, &kgo.Record{Key: []byte(o[0]), Value: []byte(o[1])})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("loading orders: %w", err)
	}
	reader, err := demo.Client(
		kgo.ConsumeTopics(t.output),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return err
	}
	defer reader.Close()

	f.Brokers, f.StateDir = demo.Brokers, demo.StateDir
	p, err := newProcessor(topo, f, logger)
	if err != nil {
		return err
	}
	items := map[string]Item{}
	var badItem error
	released := func() bool {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		reader.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			it, err := ParseItem(string(r.Value))
			if err != nil && badItem == nil {
				badItem = err
			}
			items[string(r.Key)] = it
		})
		return len(items) >= len(sampleOrders) || badItem != nil
	}
	err = demo.RunUntil(ctx, p.Run, released, f.Timeout, "the released items")
	if err != nil {
		return err
	}
	if badItem != nil {
		return badItem
	}
	// The summaries of the batches that released the items committed with
	// them: they are all in the topic now.
	batches, err := demo.ReadTopic(ctx, t.batches)
	if err != nil {
		return err
	}

	ids := make([]string, 0, len(items))
	for id := range items {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	bw := bufio.NewWriter(stdout)
	for _, id := range ids {
		fmt.Fprintf(bw, "%s\t%s\n", id, items[id].Payload)
	}
	fmt.Fprintf(bw, "%d items released in %d batches\n", len(items), len(batches))
	return bw.Flush()
}
