package crashtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// OpenTransaction reports whether the broker describes a transaction of
// instance name as open (Ongoing, PrepareCommit or PrepareAbort): one of the
// transactional ids <App>-<stage>-<name>. A failed DescribeTransactions
// that returned nothing is logged and counts as no open transaction.
func (h *Harness) OpenTransaction(name string) bool {
	adm := testbroker.Admin(h.T, h.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	txns, err := adm.DescribeTransactions(ctx)
	if err != nil && len(txns) == 0 {
		h.T.Logf("describing transactions: %v", err)
		return false
	}
	return txnOpen(txns, h.App, name)
}

// txnOpen reports whether txns holds an open transaction of instance name
// of application app.
func txnOpen(txns kadm.DescribedTransactions, app, name string) bool {
	for id, d := range txns {
		if strings.HasPrefix(id, app+"-") && strings.HasSuffix(id, "-"+name) {
			switch d.State {
			case "Ongoing", "PrepareCommit", "PrepareAbort":
				return true
			}
		}
	}
	return false
}

// WaitCount consumes topic with read_committed from its start until it has
// seen n records, timeout passed or every started instance has exited, and
// returns how many records it saw (the caller judges a shortfall).
func (h *Harness) WaitCount(topic string, n int, timeout time.Duration) int {
	return WaitCountWhile(h.T, h.Brokers, topic, n, timeout, h.Alive)
}

// WaitCountWhile consumes topic with read_committed from its start until it
// has seen n records, timeout passed or alive returns false (checked before
// every poll of at most a second), and returns how many records it saw.
func WaitCountWhile(t testing.TB, brokers []string, topic string, n int, timeout time.Duration, alive func() bool) int {
	cl := testbroker.NewClient(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n && ctx.Err() == nil && alive() {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		seen += cl.PollFetches(pctx).NumRecords()
		pcancel()
	}
	return seen
}

// Produce writes recs to topic (records without a topic) and waits for
// them to be acknowledged, within a minute. A failure is reported with
// t.Errorf, so that Produce may run on another goroutine (see SteadyInput).
func Produce(t testing.TB, brokers []string, topic string, recs []*kgo.Record) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Errorf("producing to %s: %v", topic, err)
	}
}

// SteadyInput calls produce every interval, on a goroutine of its own,
// until the returned function is called; that function returns once
// produce has returned for the last time, and may be called more than once.
func SteadyInput(interval time.Duration, produce func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(interval):
			}
			produce()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}

// CreateTopics creates topics with the given partitions and configs (nil
// for the broker's defaults), failing the test on an error.
func CreateTopics(t testing.TB, brokers []string, partitions int32, configs map[string]*string, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		testbroker.CreateTopic(t, brokers, topic, partitions, configs)
	}
}

// RetainForever returns the topic config retention.ms=-1. A crash test's
// input with event timestamps from the past (and the outputs that inherit
// them) would otherwise be deleted by the broker's time retention within
// minutes.
func RetainForever() map[string]*string {
	forever := "-1"
	return map[string]*string{"retention.ms": &forever}
}

// NewProducer returns a function that writes recs to topic (records
// without a topic), each to the partition it names, and waits for them to
// be acknowledged, within a minute; a failure is reported with t.Errorf, so
// that it may run on another goroutine (see SteadyInput). Its client is
// closed when the test ends.
func NewProducer(t testing.TB, brokers []string, topic string) func(recs []*kgo.Record) {
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	return func(recs []*kgo.Record) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Errorf("producing to %s: %v", topic, err)
		}
	}
}

// WaitCommitted waits until the consumer group has committed the end of
// topic (as it is when WaitCommitted is called) in every partition, so
// that every record was processed in a committed transaction; it fails
// the test when timeout passes first or every instance has exited.
func (h *Harness) WaitCommitted(group, topic string, timeout time.Duration) {
	h.T.Helper()
	adm := testbroker.Admin(h.T, h.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ends, err := adm.ListEndOffsets(ctx, topic)
	cancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		h.T.Fatalf("listing the end offsets of %s: %v", topic, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		offs, err := adm.FetchOffsets(ctx, group)
		cancel()
		behind := 0
		ends.Each(func(e kadm.ListedOffset) {
			if o, ok := offs.Lookup(topic, e.Partition); err != nil || !ok || o.At < e.Offset {
				behind++
			}
		})
		if behind == 0 {
			return
		}
		alive := h.Alive()
		if !alive || time.Now().After(deadline) {
			h.T.Fatalf("the group %s has not committed the end of %d of the %d partitions of %s (alive: %v, after up to %v; last error %v)",
				group, behind, len(ends[topic]), topic, alive, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// KeysByPartition returns, for each of the partitions of topic, the first
// n of the keys name(0), name(1), ... that Kafka's default partitioner puts
// there, in that order: a generator that writes each partition's records
// itself (NewProducer) keeps every key in its own partition, as the
// runtime expects.
func KeysByPartition(topic string, partitions, n int, name func(i int) string) [][]string {
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	out := make([][]string, partitions)
	for i, full := 0, 0; full < partitions; i++ {
		k := name(i)
		p := part.Partition(&kgo.Record{Key: []byte(k)}, partitions)
		if len(out[p]) < n {
			if out[p] = append(out[p], k); len(out[p]) == n {
				full++
			}
		}
	}
	return out
}
