package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	gcodec "github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"github.com/rcrowley/go-metrics"
	"github.com/syndtr/goleveldb/leveldb/filter"
	"github.com/syndtr/goleveldb/leveldb/opt"
)

// goka runs the scenario with github.com/lovoo/goka v1.1.14: its own API
// (DefineGroup, Input, Output, Persist, ctx.Emit, ctx.SetValue), offsets
// committed by sarama's auto-commit after the callback's emits and table
// writes are acknowledged (at-least-once). Two rows:
//
// goka: goka.DefaultConfig (sarama, snappy, 64 KiB / 100 ms producer
// flushes, acks from the leader, sarama's 256-message channels, goka's
// 10-message partition channels, sarama's metrics on, LevelDB defaults,
// sarama's 1 s auto-commit), with two changes a benchmark needs:
//   - Consumer.Offsets.Initial = OffsetOldest (goka's default is the newest
//     offset, which would skip the preloaded input);
//   - replication 1 for the topics goka creates (goka's default is 2; the
//     test broker has one node), as goka's own examples do.
//
// goka-tuned: the same plus what a goka user tuning for production would set
// (gokaTunedSettings, below, says which and why).
//
// Local state is LevelDB (goka's default storage) in the run's state
// directory. A design difference the numbers include: goka writes every
// table update (ctx.SetValue) to LevelDB and produces it to the table topic,
// per update; sluice writes a key once per transaction, to Pebble and to the
// changelog, however often the transaction updated it.

// gokaConfig returns the sarama configuration of a goka row. The settings of
// goka-tuned and why each one (a block for docs/performance.md):
//
//	| setting (goka-tuned) | goka's default | why |
//	|---|---|---|
//	| Producer.Compression = None | snappy | the broker is on localhost: compression costs CPU and saves no network |
//	| Producer.Flush.Frequency = 5 ms | 100 ms | Kafka 4's linger.ms default and sluice's linger; goka's 100 ms adds up to 100 ms to every emit, and the offset commit waits for the emits |
//	| Producer.Flush.Bytes = 1 MiB | 64 KiB | larger produce requests under a backlog (sarama's per-partition batch limit, Producer.MaxMessageBytes, is 1 MB) |
//	| Producer.RequiredAcks = WaitForAll | WaitForLocal | the durability of the other at-least-once rows (franz-go's default acks=all); on one broker it costs nothing |
//	| ChannelBufferSize = 4096 | 256 | sarama's internal channels (fetched messages per partition, producer input) buffer more between goroutines |
//	| WithPartitionChannelSize(1000) | 10 | the buffer between sarama's consumer and goka's partition goroutine |
//	| Consumer.Offsets.AutoCommit.Interval = commit interval (100 ms) | 1 s | the other rows commit every 100 ms; goka marks an offset when its emits are acknowledged, sarama commits the marks on this timer |
//	| Consumer.Fetch.Default = 4 MiB | 1 MiB | fewer fetch round trips under a backlog |
//	| metrics.UseNilMetrics = true | false | sarama's go-metrics histograms and meters cost CPU per message; sarama's documented switch (a global of go-metrics, set before each goka row's clients are made) |
//	| LevelDB WriteBuffer = 32 MiB | 4 MiB | fewer memtable flushes and compactions (sluice's Pebble memtable is 32 MiB) |
//	| LevelDB BlockCacheCapacity = 32 MiB | 8 MiB | more of the table's blocks in memory for reads of keys not in the memtable |
//	| LevelDB Filter = bloom, 10 bits per key | none | a read of a new key (aggregate: 100,000 keys) skips the tables that cannot hold it (sluice's Pebble has the same filter) |
//	| LevelDB NoSync = true | false | no fsync of the journal; the table topic is the durable copy, as sluice's Pebble uses NoSync |
//
// Left at goka's defaults: sarama's Version (V2_0_0_0; later protocol
// versions add features, not speed, for this work), the producer's
// idempotence (sarama requires Net.MaxOpenRequests = 1 for it, which would
// slow goka down), MaxOpenRequests (5), goka's hasher and copartitioning
// balancer.
func gokaConfig(tuned bool, commitInterval time.Duration) *sarama.Config {
	c := goka.DefaultConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	if tuned {
		c.Producer.Compression = sarama.CompressionNone
		c.Producer.Flush.Frequency = 5 * time.Millisecond
		c.Producer.Flush.Bytes = 1 << 20
		c.Producer.RequiredAcks = sarama.WaitForAll
		c.ChannelBufferSize = 4096
		c.Consumer.Offsets.AutoCommit.Interval = commitInterval
		c.Consumer.Fetch.Default = 4 << 20
	}
	return c
}

func gokaLevelDB(tuned bool) *opt.Options {
	if !tuned {
		return nil // goleveldb's defaults, as storage.DefaultBuilder
	}
	return &opt.Options{
		WriteBuffer:        32 << 20,
		BlockCacheCapacity: 32 << 20,
		Filter:             filter.NewBloomFilter(10),
		NoSync:             true,
	}
}

var gokaLogOnce sync.Once

func startGoka(tuned bool) func(ctx context.Context, r *runSpec) (*running, error) {
	return func(ctx context.Context, r *runSpec) (*running, error) {
		return runGoka(ctx, r, tuned)
	}
}

func runGoka(ctx context.Context, r *runSpec, tuned bool) (*running, error) {
	gokaLogOnce.Do(func() {
		// goka and sarama log every rebalance to the standard logger.
		sarama.Logger = log.New(io.Discard, "", 0)
	})
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	opts := func(name string) []goka.ProcessorOption {
		o := []goka.ProcessorOption{
			goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(tuned, r.commitInterval), tmc)),
			goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(gokaConfig(tuned, r.commitInterval))),
			goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig(tuned, r.commitInterval))),
			goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(gokaConfig(tuned, r.commitInterval))),
			goka.WithStorageBuilder(storage.BuilderWithOptions(filepath.Join(r.stateDir, name), gokaLevelDB(tuned))),
			goka.WithLogger(log.New(io.Discard, "", 0)),
		}
		if tuned {
			o = append(o, goka.WithPartitionChannelSize(1000))
		}
		return o
	}
	groups, err := gokaGroups(ctx, r)
	if err != nil {
		return nil, err
	}
	// go-metrics reads its global UseNilMetrics whenever sarama makes a
	// meter or histogram: here for the producers and topic managers, in
	// Run for the consumers. The harness runs one system at a time, so the
	// switch stays as this row set it until the row stops.
	metrics.UseNilMetrics = tuned
	var procs []*goka.Processor
	for _, g := range groups {
		p, err := goka.NewProcessor(r.brokers, g, opts(string(g.Group()))...)
		if err != nil {
			return nil, fmt.Errorf("goka: %w", err)
		}
		procs = append(procs, p)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		runErr error
	)
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				runErr = errors.Join(runErr, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	return &running{stop: func() error { cancel(); <-done; return runErr }, done: done, metrics: noMetrics, pid: os.Getpid()}, nil
}

// gokaGroups defines the scenario's goka groups with goka's API (and
// creates the topics goka expects to exist).
func gokaGroups(ctx context.Context, r *runSpec) ([]*goka.GroupGraph, error) {
	output := goka.Stream(r.output)
	var groups []*goka.GroupGraph
	switch r.sc.name {
	case "passthrough":
		groups = append(groups, goka.DefineGroup(goka.Group(r.app+"-map"),
			goka.Input(goka.Stream(r.input), new(gcodec.Bytes), func(ctx goka.Context, msg any) {
				ctx.Emit(output, ctx.Key(), upper(msg.([]byte)))
			}),
			goka.Output(output, new(gcodec.Bytes)),
		))
	case "wordcount":
		repart := goka.Stream(r.app + "-by-word-repartition")
		if err := r.createTopics(ctx, string(repart), r.app+"-by-word-table"); err != nil {
			return nil, err
		}
		groups = append(groups,
			goka.DefineGroup(goka.Group(r.app+"-split"),
				goka.Input(goka.Stream(r.input), new(gcodec.String), func(ctx goka.Context, msg any) {
					for _, w := range strings.Fields(msg.(string)) {
						ctx.Emit(repart, w, w)
					}
				}),
				goka.Output(repart, new(gcodec.String)),
			),
			goka.DefineGroup(goka.Group(r.app+"-by-word"),
				goka.Input(repart, new(gcodec.String), func(ctx goka.Context, _ any) {
					var n int64
					if v := ctx.Value(); v != nil {
						n = v.(int64)
					}
					n++
					ctx.SetValue(n)
					ctx.Emit(output, ctx.Key(), strconv.FormatInt(n, 10))
				}),
				goka.Persist(new(gcodec.Int64)),
				goka.Output(output, new(gcodec.String)),
			))
	case "aggregate":
		if err := r.createTopics(ctx, r.app+"-sum-table"); err != nil {
			return nil, err
		}
		groups = append(groups, goka.DefineGroup(goka.Group(r.app+"-sum"),
			goka.Input(goka.Stream(r.input), new(gcodec.Bytes), func(ctx goka.Context, msg any) {
				var s int64
				if v := ctx.Value(); v != nil {
					s = v.(int64)
				}
				s += leadingNumber(msg.([]byte))
				ctx.SetValue(s)
				ctx.Emit(output, ctx.Key(), strconv.FormatInt(s, 10))
			}),
			goka.Persist(new(gcodec.Int64)),
			goka.Output(output, new(gcodec.String)),
		))
	default:
		return nil, fmt.Errorf("no goka pipeline for %s", r.sc.name)
	}
	return groups, nil
}
