package processor_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// A word count, run exactly-once on an in-process Kafka (kfake).
func Example() {
	// The topology: lines -> words -> repartition by word -> count.
	b := stream.NewBuilder()
	lines := stream.Source(b, "lines", codec.String{}, codec.String{}, stream.Named("split"))
	words := stream.FlatMap(lines, func(_, line string) []stream.KeyValue[string, string] {
		var out []stream.KeyValue[string, string]
		for _, w := range strings.Fields(line) {
			out = append(out, stream.KeyValue[string, string]{Key: w, Value: w})
		}
		return out
	})
	byWord := stream.GroupBy(words, func(w, _ string) string { return w }, codec.String{}, codec.String{}, stream.Named("by-word"))
	stream.To(stream.Count(byWord, stream.Named("counts")).ToStream(), "counts", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	// A broker with the input and output topics, and some input.
	cluster, _ := kfake.NewCluster(kfake.NumBrokers(1))
	defer cluster.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.DefaultProduceTopic("lines"))
	defer cl.Close()
	ctx := context.Background()
	kadm.NewClient(cl).CreateTopics(ctx, 2, 1, nil, "lines", "counts")
	cl.ProduceSync(ctx, kgo.StringRecord("to be or not to be"))

	dir, _ := os.MkdirTemp("", "sluice-example-")
	defer os.RemoveAll(dir)
	p, err := processor.New(topo,
		processor.Brokers(cluster.ListenAddrs()...),
		processor.ApplicationID("example"),
		processor.StateDir(dir),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()

	// Read the counts back with a read_committed consumer: six words, six
	// count updates.
	out, _ := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("counts"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer out.Close()
	final := map[string]string{}
	pollCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for n := 0; n < 6 && pollCtx.Err() == nil; {
		out.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) {
			final[string(r.Key)] = string(r.Value)
			n++
		})
	}
	stop()
	if err := <-done; err != nil {
		fmt.Println(err)
	}
	for _, w := range []string{"be", "not", "or", "to"} {
		fmt.Println(w, final[w])
	}
	// Output:
	// be 2
	// not 1
	// or 1
	// to 2
}

// Internal topics (here the count's changelog and the repartition topic)
// are created with ReplicationFactor's replicas; without it, with the
// brokers' default.replication.factor.
func ExampleReplicationFactor() {
	b := stream.NewBuilder()
	words := stream.Source(b, "words", codec.String{}, codec.String{}, stream.Named("split"))
	byWord := stream.GroupBy(words, func(_, w string) string { return w }, codec.String{}, codec.String{}, stream.Named("by-word"))
	stream.To(stream.Count(byWord, stream.Named("counts")).ToStream(), "counts", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	// A cluster of three brokers.
	cluster, _ := kfake.NewCluster(kfake.NumBrokers(3))
	defer cluster.Close()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	adm.CreateTopics(ctx, 2, -1, nil, "words", "counts")

	dir, _ := os.MkdirTemp("", "sluice-example-")
	defer os.RemoveAll(dir)
	p, err := processor.New(topo,
		processor.Brokers(cluster.ListenAddrs()...),
		processor.ApplicationID("example"),
		processor.StateDir(dir),
		processor.ReplicationFactor(2),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()

	// Wait for the changelog, then look at its replicas.
	const changelog = "example-counts-changelog"
	var replicas int
	for deadline := time.Now().Add(time.Minute); replicas == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		tds, err := adm.ListTopics(ctx, changelog)
		if err == nil && tds[changelog].Err == nil {
			for _, pd := range tds[changelog].Partitions {
				replicas = len(pd.Replicas)
			}
		}
	}
	stop()
	if err := <-done; err != nil {
		fmt.Println(err)
	}
	fmt.Printf("%s: %d replicas per partition\n", changelog, replicas)
	// Output:
	// example-counts-changelog: 2 replicas per partition
}
