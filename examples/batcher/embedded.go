package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/examples/internal/cli"
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
func runEmbedded(ctx context.Context, c config, topo topology, stdout io.Writer, logger *slog.Logger) error {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return fmt.Errorf("starting the embedded broker: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(c.input))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for _, t := range []string{c.input, c.output, c.batches} {
		if _, err := adm.CreateTopic(ctx, int32(c.Partitions), 1, nil, t); err != nil {
			return fmt.Errorf("creating topic %s: %w", t, err)
		}
	}
	var recs []*kgo.Record
	for _, o := range sampleOrders {
		recs = append(recs, &kgo.Record{Key: []byte(o[0]), Value: []byte(o[1])})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("loading orders: %w", err)
	}

	reader, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(c.output),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return err
	}
	defer reader.Close()

	d, err := c.StartDemo(ctx, "batcher", topo, brokers, logger)
	if err != nil {
		return err
	}
	defer d.Stop()
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
	err = cli.WaitFor(ctx, released, c.Timeout, d.Stopped(), "the released items")
	if runErr := d.Stop(); runErr != nil {
		return runErr
	}
	if err != nil {
		return err
	}
	if badItem != nil {
		return badItem
	}
	// The summaries of the batches that released the items committed with
	// them: they are all in the topic now.
	batches, err := cli.ReadTopic(ctx, brokers, c.batches)
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
