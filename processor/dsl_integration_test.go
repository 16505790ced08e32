package processor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// The new DSL on the runtime: a stream-table join with tombstones, a loop,
// a repartition with its own partition count, a table aggregation.
func TestIntegrationDSL(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "dsl")
	views, users, out, perCountry := app+"-views", app+"-users", app+"-out", app+"-per-country"
	for _, tp := range []string{views, users, out, perCountry} {
		testbroker.CreateTopic(t, brokers, tp, 2, nil)
	}

	b := stream.NewBuilder()
	v := stream.Source(b, views, codec.String{}, codec.String{}, stream.Named("views"))
	u := stream.SourceTable(b, users, codec.String{}, codec.String{}, stream.Named("users"))
	loop := stream.DeclareLoop(b, codec.String{}, codec.Int64Text{}, stream.Named("again"))
	joined := stream.Join(v, u, func(_, page, country string) string { return country }, stream.Named("enrich"))
	n := stream.MapValues(joined, func(_, c string) int64 { return 2 })
	all := stream.Merge([]stream.Stream[string, int64]{n, loop.Stream()}, stream.Named("merge"))
	stream.LoopTo(stream.MapValues(stream.Filter(all, func(_ string, x int64) bool { return x > 0 }),
		func(_ string, x int64) int64 { return x - 1 }), loop, stream.Named("back"))
	byCountry := stream.Repartition(stream.SelectKey(joined, func(_, c string) string { return c }),
		codec.String{}, codec.String{}, stream.Named("by-country"), stream.Partitions(3))
	stream.To(stream.Count(stream.GroupByKey(byCountry, codec.String{}, codec.String{}), stream.Named("views-per-country")).ToStream(),
		out, codec.String{}, codec.Int64Text{})
	stream.TableTo(stream.TableCount(stream.TableGroupBy(u, func(user, c string) (string, string) { return c, user },
		codec.String{}, codec.String{}, stream.Named("users-by-country")), stream.Named("users-per-country")),
		perCountry, codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	t.Log(topo)

	produce := func(topic string, recs ...*kgo.Record) {
		cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// The table's records are a minute older than the views: each task
	// processes them first, whatever the order of fetches (no wait for
	// the table to load).
	past := time.Now().Add(-time.Minute)
	produce(users, &kgo.Record{Key: []byte("ann"), Value: []byte("de"), Timestamp: past}, &kgo.Record{Key: []byte("bob"), Value: []byte("fr"), Timestamp: past},
		&kgo.Record{Key: []byte("cid"), Value: []byte("de"), Timestamp: past}, &kgo.Record{Key: []byte("cid"), Timestamp: past}) // cid deleted
	produce(views, &kgo.Record{Key: []byte("ann"), Value: []byte("/a")}, &kgo.Record{Key: []byte("bob"), Value: []byte("/b")},
		&kgo.Record{Key: []byte("cid"), Value: []byte("/c")}, &kgo.Record{Key: []byte("ann"), Value: []byte("/d")})

	p, err := New(topo, testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if got := waitRecords(t, brokers, out, 3, time.Minute); got < 3 {
		cancel()
		t.Fatalf("output has %d records (Run: %v)", got, <-done)
	}
	time.Sleep(2 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	final := map[string]string{}
	for _, r := range testbroker.ReadCommitted(t, brokers, out) {
		final[string(r.Key)] = string(r.Value)
	}
	if fmt.Sprint(final) != "map[de:2 fr:1]" {
		t.Errorf("views per country %v, want de:2 fr:1", final)
	}
	table := map[string]string{}
	for _, r := range testbroker.ReadCommitted(t, brokers, perCountry) {
		table[string(r.Key)] = string(r.Value)
	}
	if fmt.Sprint(table) != "map[de:1 fr:1]" {
		t.Errorf("users per country %v, want de:1 fr:1", table)
	}
	adm := kadm.NewClient(testbroker.NewClient(t, brokers))
	md, err := adm.Metadata(context.Background(), app+"-by-country-repartition", app+"-again-loop")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(md.Topics[app+"-by-country-repartition"].Partitions); n != 3 {
		t.Errorf("repartition topic has %d partitions, want 3", n)
	}
	if n := len(md.Topics[app+"-again-loop"].Partitions); n != 2 {
		t.Errorf("loop topic has %d partitions, want 2", n)
	}
	loopRecs := testbroker.ReadCommitted(t, brokers, app+"-again-loop")
	if len(loopRecs) != 6 { // 3 joined views * (1, 0)
		t.Errorf("%d loop records, want 6", len(loopRecs))
	}
	t.Logf("metrics: %+v", p.Metrics())
}
