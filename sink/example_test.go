package sink_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/sink"
)

// mapSink keeps the latest value per key, and the offsets, in memory. A real
// sink does the same in a database transaction (see package sqlsink).
type mapSink struct {
	mu      sync.Mutex
	values  map[string]string
	offsets map[string]sink.Position // group/topic/partition -> next offset and topic id
}

func (s *mapSink) Offsets(_ context.Context, group, topic string, partitions []int32) (map[int32]sink.Position, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int32]sink.Position{}
	for _, p := range partitions {
		if o, ok := s.offsets[fmt.Sprintf("%s/%s/%d", group, topic, p)]; ok {
			out[p] = o
		}
	}
	return out, nil
}

func (s *mapSink) Write(_ context.Context, b *sink.Batch) error {
	s.mu.Lock() // the "transaction"
	defer s.mu.Unlock()
	// Compare-and-set every partition's position (offset and topic id)
	// first; change nothing if one moved.
	for _, rg := range b.Ranges {
		o, ok := s.offsets[fmt.Sprintf("%s/%s/%d", b.Group, rg.Topic, rg.Partition)]
		if ok != (rg.From != sink.NoOffset) || (ok && o != sink.Position{Offset: rg.From, TopicID: rg.FromTopicID}) {
			return &sink.FencedError{Group: b.Group, Topic: rg.Topic, Partition: rg.Partition, From: rg.From}
		}
	}
	for _, rg := range b.Ranges {
		s.offsets[fmt.Sprintf("%s/%s/%d", b.Group, rg.Topic, rg.Partition)] = sink.Position{Offset: rg.To, TopicID: rg.TopicID}
	}
	for _, r := range b.Records {
		s.values[string(r.Key)] = string(r.Value)
	}
	return nil
}

// Keep the latest value of each key of a topic in a Sink, exactly once,
// on an in-process Kafka (kfake).
func Example() {
	cluster, _ := kfake.NewCluster(kfake.NumBrokers(1))
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	cl, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("colors"))
	defer cl.Close()
	ctx := context.Background()
	kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, "colors")
	cl.ProduceSync(ctx,
		&kgo.Record{Key: []byte("sky"), Value: []byte("grey")},
		&kgo.Record{Key: []byte("grass"), Value: []byte("green")},
		&kgo.Record{Key: []byte("sky"), Value: []byte("blue")},
	)

	s := &mapSink{values: map[string]string{}, offsets: map[string]sink.Position{}}
	r, err := sink.New(s,
		sink.Brokers(brokers...),
		sink.ApplicationID("example"),
		sink.Topics("colors"),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	// Wait until the sink's offsets reach the ends of the partitions.
	ends, _ := kadm.NewClient(cl).ListEndOffsets(ctx, "colors")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		stored, _ := s.Offsets(ctx, r.Group(), "colors", []int32{0, 1})
		caughtUp := true
		ends.Each(func(e kadm.ListedOffset) {
			if e.Offset > 0 && stored[e.Partition].Offset < e.Offset {
				caughtUp = false
			}
		})
		if caughtUp {
			break
		}
	}
	stop()
	if err := <-done; err != nil {
		fmt.Println(err)
	}
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Println(k, s.values[k])
	}
	// Output:
	// grass green
	// sky blue
}
