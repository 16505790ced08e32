package sink_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
)

// memSink is an in-memory Sink with the compare-and-set contract, and knobs
// for tests. It records every committed batch.
type memSink struct {
	mu      sync.Mutex
	offsets map[string]sink.Position // key: group/topic/partition
	batches []*sink.Batch            // committed, in order
	fenced  int

	// beforeWrite, if set, runs at the start of every Write, outside the
	// lock; a non-nil error fails the write (before anything is stored).
	beforeWrite func(ctx context.Context, b *sink.Batch) error
	// offsetsErr, if set, fails Offsets calls while it returns non-nil.
	offsetsErr func() error
}

func newMemSink() *memSink { return &memSink{offsets: map[string]sink.Position{}} }

func okey(group, topic string, p int32) string { return fmt.Sprintf("%s/%s/%d", group, topic, p) }

func (m *memSink) Offsets(_ context.Context, group, topic string, partitions []int32) (map[int32]sink.Position, error) {
	if m.offsetsErr != nil {
		if err := m.offsetsErr(); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]sink.Position{}
	for _, p := range partitions {
		if o, ok := m.offsets[okey(group, topic, p)]; ok {
			out[p] = o
		}
	}
	return out, nil
}

func (m *memSink) Write(ctx context.Context, b *sink.Batch) error {
	if m.beforeWrite != nil {
		if err := m.beforeWrite(ctx, b); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, rg := range b.Ranges {
		o, ok := m.offsets[okey(b.Group, rg.Topic, rg.Partition)]
		if (rg.From == sink.NoOffset && ok) || (rg.From != sink.NoOffset && (!ok || o != sink.Position{Offset: rg.From, TopicID: rg.FromTopicID})) {
			m.fenced++
			return &sink.FencedError{Group: b.Group, Topic: rg.Topic, Partition: rg.Partition, From: rg.From}
		}
	}
	for _, rg := range b.Ranges {
		m.offsets[okey(b.Group, rg.Topic, rg.Partition)] = sink.Position{Offset: rg.To, TopicID: rg.TopicID}
	}
	m.batches = append(m.batches, b)
	return nil
}

// set stores an offset directly, as another writer would, without a topic
// id (as a sink stored it before it kept ids).
func (m *memSink) set(group, topic string, p int32, o int64) {
	m.setPosition(group, topic, p, sink.Position{Offset: o})
}

func (m *memSink) setPosition(group, topic string, p int32, pos sink.Position) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.offsets[okey(group, topic, p)] = pos
}

func (m *memSink) offset(group, topic string, p int32) (int64, bool) {
	pos, ok := m.position(group, topic, p)
	return pos.Offset, ok
}

func (m *memSink) position(group, topic string, p int32) (sink.Position, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.offsets[okey(group, topic, p)]
	return o, ok
}

// written returns every committed record by partition and offset, and the
// number of times each was written.
func (m *memSink) written() map[int32]map[int64]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[int32]map[int64]int{}
	for _, b := range m.batches {
		for _, r := range b.Records {
			if out[r.Partition] == nil {
				out[r.Partition] = map[int64]int{}
			}
			out[r.Partition][r.Offset]++
		}
	}
	return out
}

// checkBatches checks every committed batch against the Range contract:
// each range starts where the previous committed range of its partition
// ended, and its records lie inside it in ascending order.
func (m *memSink) checkBatches(t *testing.T, start map[int32]int64) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	last := map[int32]int64{}
	for p, o := range start {
		last[p] = o
	}
	for i, b := range m.batches {
		inRange := map[int32]sink.Range{}
		for _, rg := range b.Ranges {
			from := rg.From
			if prev, ok := last[rg.Partition]; ok && from != prev {
				t.Errorf("batch %d: %s/%d starts at %d, the previous batch ended at %d", i, rg.Topic, rg.Partition, from, prev)
			} else if !ok && from != sink.NoOffset {
				t.Errorf("batch %d: %s/%d starts at %d with no previous batch", i, rg.Topic, rg.Partition, from)
			}
			last[rg.Partition] = rg.To
			inRange[rg.Partition] = rg
		}
		prev := map[int32]int64{}
		for _, r := range b.Records {
			rg, ok := inRange[r.Partition]
			if !ok || (rg.From != sink.NoOffset && r.Offset < rg.From) || r.Offset >= rg.To {
				t.Errorf("batch %d: record %d/%d outside its range %+v", i, r.Partition, r.Offset, rg)
			}
			if p, ok := prev[r.Partition]; ok && r.Offset <= p {
				t.Errorf("batch %d: record %d/%d after %d", i, r.Partition, r.Offset, p)
			}
			prev[r.Partition] = r.Offset
		}
	}
}

// produceN produces n records with keys k0..k(n-1) spread over the topic's
// partitions and returns the number of records per partition.
func produceN(t *testing.T, brokers []string, topic string, from, n int) {
	t.Helper()
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%d", from+i), Value: fmt.Appendf(nil, "v%d", from+i)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
}

// endOffsets lists the high watermarks of topic's partitions.
func endOffsets(t *testing.T, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := testbroker.Admin(t, brokers).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing end offsets: %v", err)
	}
	out := map[int32]int64{}
	for p, e := range ends[topic] {
		out[p] = e.Offset
	}
	return out
}

// waitStored waits until the sink stores at least the given offsets.
func waitStored(t *testing.T, m *memSink, group, topic string, want map[int32]int64, timeout time.Duration, runErr <-chan error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done := true
		for p, e := range want {
			if o, _ := m.offset(group, topic, p); e > 0 && o < e {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case err := <-runErr:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			got := map[int32]int64{}
			for p := range want {
				got[p], _ = m.offset(group, topic, p)
			}
			t.Fatalf("after %v the sink stores %v, want %v", timeout, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRunner runs r in the background; stop cancels it and returns Run's
// error.
func startRunner(t *testing.T, r *sink.Runner) (errs <-chan error, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-ch:
			case <-time.After(60 * time.Second):
				err = fmt.Errorf("Run did not return within 60s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return ch, stop
}

// testOpts are short timeouts for tests, as in the test profile.
func testOpts(brokers []string, app, topic string) []sink.Opt {
	return []sink.Opt{
		sink.Brokers(brokers...),
		sink.ApplicationID(app),
		sink.Topics(topic),
		sink.SessionTimeout(6 * time.Second),
		sink.HeartbeatInterval(500 * time.Millisecond),
		sink.RebalanceTimeout(10 * time.Second),
		// 3 attempts × 2s and the pauses between them fit in the
		// rebalance timeout, as New requires.
		sink.WriteTimeout(2 * time.Second),
	}
}
