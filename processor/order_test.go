package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// TestOrderByTime: a task's records are merged by timestamp across its
// input partitions, each partition's offset order kept; ties follow the
// stage's input order; tasks stay apart.
func TestOrderByTime(t *testing.T) {
	st := unitStage(t, ExactlyOnce) // inputs a, b
	at := func(topic string, p int32, off int64, sec int) *kgo.Record {
		return &kgo.Record{Topic: topic, Partition: p, Offset: off, Timestamp: time.Unix(int64(sec), 0)}
	}
	in := []*kgo.Record{
		at("b", 0, 0, 5), at("b", 0, 1, 1), at("b", 0, 2, 9), // offset order: 5, 1, 9
		at("a", 1, 0, 3),
		at("a", 0, 0, 2), at("a", 0, 1, 5), at("a", 0, 2, 7),
		at("b", 1, 0, 1),
	}
	var got []string
	for _, r := range st.orderByTime(in) {
		got = append(got, fmt.Sprintf("%s%d@%d", r.Topic, r.Partition, r.Timestamp.Unix()))
	}
	// Task 0: a@2, then a@5 and b@5 tie (a first), then b@1 (behind b@5
	// in its partition), a@7, b@9. Task 1: b@1, a@3.
	want := "[a0@2 a0@5 b0@5 b0@1 a0@7 b0@9 b1@1 a1@3]"
	if fmt.Sprint(got) != want {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// TestIntegrationJoinBacklogInTimeOrder: an application starts on a backlog
// whose stream records were written before the table records they join
// with, but are timestamped a minute after them (issue 14 item 1). Processed
// in fetch order, every view would find an empty table; processed in time
// order within each task, every view joins.
func TestIntegrationJoinBacklogInTimeOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "ord")
	views, users, out := app+"-a-views", app+"-z-users", app+"-out" // fetch order puts the views first
	for _, tp := range []string{views, users, out} {
		testbroker.CreateTopic(t, brokers, tp, 2, nil)
	}
	b := stream.NewBuilder()
	v := stream.Source(b, views, codec.String{}, codec.String{}, stream.Named("views"))
	u := stream.SourceTable(b, users, codec.String{}, codec.String{}, stream.Named("users"))
	stream.To(stream.Join(v, u, func(_, page, country string) string { return page + "@" + country }, stream.Named("enrich")),
		out, codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	produce := func(topic string, recs []*kgo.Record) {
		cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var vs, us []*kgo.Record
	for i := range n {
		k := []byte(fmt.Sprintf("u%d", i))
		vs = append(vs, &kgo.Record{Key: k, Value: []byte(fmt.Sprintf("/p%d", i)), Timestamp: t0.Add(time.Minute)})
		us = append(us, &kgo.Record{Key: k, Value: []byte("c"), Timestamp: t0})
	}
	produce(views, vs) // the views first, as on a topic that a backfill wrote late
	produce(users, us)

	p, err := New(topo, testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(time.Minute)
	for p.Metrics().Stages[topo.Stages()[0].Name].Records < 2*n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := testbroker.ReadCommitted(t, brokers, out)
	t.Logf("%d of %d views joined; metrics %+v", len(got), n, p.Metrics())
	if len(got) != n {
		t.Fatalf("%d of %d views joined: records were not processed in time order within their task", len(got), n)
	}
}

// TestLaggingPartitions: a task with records waits for an input partition
// that has none only while the broker holds records past what the stage
// consumed of it; a wait that ended without them does not repeat on the
// same evidence.
func TestLaggingPartitions(t *testing.T) {
	st := unitStage(t, ExactlyOnce) // inputs a, b
	recs := []*kgo.Record{{Topic: "a", Partition: 0, Offset: 4}}
	st.order.set(&st.order.next, "b", 0, 5)
	st.order.set(&st.order.stable, "b", 0, 5)
	if lag := st.lagging(context.Background(), nil, recs); len(lag) != 0 {
		t.Fatalf("caught-up partition reported lagging: %v", lag)
	}
	st.order.set(&st.order.stable, "b", 0, 9) // a fetch said more is committed
	lag := st.lagging(context.Background(), nil, recs)
	if fmt.Sprint(lag) != "map[b:[0]]" {
		t.Fatalf("lagging = %v, want b/0", lag)
	}
	st.settle(lag)
	if lag := st.lagging(context.Background(), nil, recs); len(lag) != 0 {
		t.Fatalf("after a wait ended, the same evidence made b/0 lag again: %v", lag)
	}
	// Partitions with records of their own never lag.
	recs = append(recs, &kgo.Record{Topic: "b", Partition: 0, Offset: 9})
	st.order.set(&st.order.stable, "b", 0, 20)
	if lag := st.lagging(context.Background(), nil, recs); len(lag) != 0 {
		t.Fatalf("a partition with records reported lagging: %v", lag)
	}
}
