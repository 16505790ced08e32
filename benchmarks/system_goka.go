package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	gcodec "github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

// goka runs the scenario with github.com/lovoo/goka v1.1.14: its own API
// (DefineGroup, Input, Output, Persist, ctx.Emit, ctx.SetValue) and its
// defaults (goka.DefaultConfig: sarama, snappy, 100 ms producer flush, offsets
// committed by sarama's auto-commit after the callback's emits and table
// writes are acknowledged: at-least-once), with two changes a benchmark needs:
//   - Consumer.Offsets.Initial = OffsetOldest (goka's default is the newest
//     offset, which would skip the preloaded input);
//   - replication 1 for the topics goka creates (goka's default is 2; the
//     test broker has one node), as goka's own examples do.
//
// Local state is goka's default storage (LevelDB), in the run's state
// directory.

func gokaConfig() *sarama.Config {
	c := goka.DefaultConfig()
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	return c
}

var gokaLogOnce sync.Once

func startGoka(ctx context.Context, r *runSpec) (*running, error) {
	gokaLogOnce.Do(func() {
		// goka and sarama log every rebalance to the standard logger.
		sarama.Logger = log.New(io.Discard, "", 0)
	})
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	opts := func(name string) []goka.ProcessorOption {
		return []goka.ProcessorOption{
			goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithConfig(gokaConfig(), tmc)),
			goka.WithConsumerGroupBuilder(goka.ConsumerGroupBuilderWithConfig(gokaConfig())),
			goka.WithConsumerSaramaBuilder(goka.SaramaConsumerBuilderWithConfig(gokaConfig())),
			goka.WithProducerBuilder(goka.ProducerBuilderWithConfig(gokaConfig())),
			goka.WithStorageBuilder(storage.DefaultBuilder(filepath.Join(r.stateDir, name))),
			goka.WithLogger(log.New(io.Discard, "", 0)),
		}
	}
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
	return &running{stop: func() error { cancel(); <-done; return runErr }, done: done}, nil
}
