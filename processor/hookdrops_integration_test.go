package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
)

// An unpaired left-join record expires into a window that has closed: the
// window drops it and the runtime counts it as late (exec.Drops), while the
// record that moved stream time, and the ones after it, are processed (issue
// 13: they were all skipped, and counted as late). Clicks and views share a
// topic, so that the task sees them in one order.
func TestIntegrationHookLateDropCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "hook-drops")
	events, counts := app+"-events", app+"-counts"
	for _, tp := range []string{events, counts} {
		testbroker.CreateTopic(t, brokers, tp, 1, nil)
	}
	b := stream.NewBuilder()
	evs := stream.Source(b, events, codec.String{}, codec.String{}, stream.Named("events"))
	cs := stream.Filter(evs, func(_, v string) bool { return v == "click" })
	vs := stream.Filter(evs, func(_, v string) bool { return v == "view" })
	joined := stream.StreamLeftJoin(cs, vs, stream.Within(time.Second),
		func(_, c, v string, ok bool) string { return c }, codec.String{}, codec.String{}, stream.Named("join"))
	n := stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(joined, codec.String{}, codec.String{}),
		stream.Tumbling(2*time.Second)), stream.Named("per-2s"))
	stream.To(stream.Map(n.ToStream(), func(w stream.Windowed[string], n int64) (string, string) { return w.Key, "1" }),
		counts, codec.String{}, codec.String{})
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(events))
	var recs []*kgo.Record
	for _, e := range []struct {
		kind string
		at   time.Duration
	}{
		{"click", 0},                                            // never paired: expires at 2.001 s into [0,2), closed
		{"view", 10 * time.Second}, {"click", 10 * time.Second}, // on time, paired; the view moves stream time past the expiry
		{"view", 12 * time.Second}, {"click", 12 * time.Second},
	} {
		recs = append(recs, &kgo.Record{Key: []byte("u"), Value: []byte(e.kind), Timestamp: winT0.Add(e.at)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	p := runUntil(t, topo, append(testOpts(t, brokers, app), ErrorPolicy(Skip)), brokers, counts, 2)
	m := p.Metrics().Stages["events"]
	if m.Late != 1 || m.Skipped != 0 || m.Records != 5 {
		t.Errorf("metrics %+v: want 1 late record (the expired click), none skipped, 5 records", m)
	}
}
