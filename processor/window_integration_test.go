package processor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

var winT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// windowedCounts counts clicks per user in tumbling 10 s windows with a 5 s
// grace period: every update to updates, the final counts (suppressed until
// the window closes) to final, as "user@start-end" (seconds since winT0).
func windowedCounts(t testing.TB, clicks, updates, final string) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	in := stream.Source(b, clicks, codec.String{}, codec.String{}, stream.Named("clicks"))
	counts := stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(in, codec.String{}, codec.String{}),
		stream.Tumbling(10*time.Second).Grace(5*time.Second)), stream.Named("counts"))
	key := func(w stream.Windowed[string], n int64) (string, int64) {
		return fmt.Sprintf("%s@%d-%d", w.Key, int(w.Window.Start.Sub(winT0).Seconds()), int(w.Window.End.Sub(winT0).Seconds())), n
	}
	stream.To(stream.Map(counts.ToStream(), key), updates, codec.String{}, codec.Int64Text{}, stream.Named("write-updates"))
	stream.To(stream.Map(stream.SuppressUntilWindowCloses(counts, stream.Named("final-counts")).ToStream(), key),
		final, codec.String{}, codec.Int64Text{}, stream.Named("write-final"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

type click struct {
	user string
	at   time.Duration // since winT0
}

func produceClicks(t testing.TB, brokers []string, topic string, cs ...click) {
	t.Helper()
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
	recs := make([]*kgo.Record, len(cs))
	for i, c := range cs {
		recs[i] = &kgo.Record{Key: []byte(c.user), Value: []byte("p"), Timestamp: winT0.Add(c.at)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing clicks: %v", err)
	}
}

func kvs(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Key)+"="+string(r.Value))
	}
	return out
}

// runFor runs a processor on topo until topic has n records (read
// committed), then a little longer, and stops it.
func runUntil(t *testing.T, topo *stream.Topology, opts []Opt, brokers []string, topic string, n int) *Processor {
	t.Helper()
	p, err := New(topo, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if got := waitRecords(t, brokers, topic, n, time.Minute); got < n {
		cancel()
		t.Fatalf("%s has %d records, want %d (Run: %v)", topic, got, n, <-done)
	}
	time.Sleep(time.Second) // anything more would show
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	return p
}

// Windowed count with suppression, end to end, across a restart on a new
// state directory: the stream time the first processor reached is restored
// from the changelog, so a record that was late then is late after the
// restart too, and no window is released twice. The outputs equal the test
// driver's for the same input.
func TestIntegrationWindowedCountSuppress(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "windows")
	clicks, updates, final := app+"-clicks", app+"-updates", app+"-final"
	for _, tp := range []string{clicks, updates, final} {
		testbroker.CreateTopic(t, brokers, tp, 2, nil)
	}
	topo := windowedCounts(t, clicks, updates, final)
	s := time.Second
	first := []click{{"a", 1 * s}, {"a", 2 * s}, {"b", 1 * s}, {"a", 20 * s}, {"b", 25 * s}}
	// a@3s is late: a's stream time is 20 s and [0,10) closed at 15 s. Only
	// the restored stream time knows that.
	second := []click{{"a", 3 * s}, {"a", 21 * s}, {"b", 26 * s}, {"a", 40 * s}, {"b", 50 * s}}

	// The driver's verdict on the same input.
	d := streamtest.New(t, topo, streamtest.Partitions(2), streamtest.ApplicationID(app))
	in := streamtest.NewInput(d, clicks, codec.String{}, codec.String{})
	late := 0
	for _, c := range slices.Concat(first, second) {
		if err := in.Send(streamtest.Record[string, string]{Key: c.user, Value: "p", Timestamp: winT0.Add(c.at)}); err != nil {
			late++
		}
	}
	wantFinal := kvList(streamtest.NewOutput(d, final, codec.String{}, codec.String{}).ReadKeyValues())
	wantUpdates := kvList(streamtest.NewOutput(d, updates, codec.String{}, codec.String{}).ReadKeyValues())
	if late != 1 || len(wantFinal) != 4 {
		t.Fatalf("driver: %d late, final %v", late, wantFinal)
	}

	produceClicks(t, brokers, clicks, first...)
	opts := append(testOpts(t, brokers, app), ErrorPolicy(Skip))
	runUntil(t, topo, opts, brokers, final, 2)

	produceClicks(t, brokers, clicks, second...)
	opts = append(testOpts(t, brokers, app), ErrorPolicy(Skip)) // a new state directory: restore from the changelogs
	p := runUntil(t, topo, opts, brokers, final, 4)
	m := p.Metrics().Stages["clicks"]
	if m.Late != 1 || m.Skipped != 1 {
		t.Errorf("metrics %+v: want 1 late record, skipped", m)
	}
	if m.RestoredRecords == 0 {
		t.Errorf("metrics %+v: nothing restored", m)
	}

	gotFinal := kvs(testbroker.ReadCommitted(t, brokers, final))
	if !sameMultiset(gotFinal, wantFinal) {
		t.Errorf("final %v, want %v (the driver's)", gotFinal, wantFinal)
	}
	gotUpdates := kvs(testbroker.ReadCommitted(t, brokers, updates))
	if !sameMultiset(gotUpdates, wantUpdates) {
		t.Errorf("updates %v, want %v (the driver's)", gotUpdates, wantUpdates)
	}

	// The changelog of the windowed store, compacted in the mind, equals the
	// driver's store: closed windows were deleted with tombstones.
	for _, store := range []string{"counts", "final-counts", "clicks-stream-time"} {
		latest := map[string][]byte{}
		for _, r := range testbroker.ReadCommitted(t, brokers, topology.ChangelogTopic(app, store)) {
			k := fmt.Sprintf("%d/%x", r.Partition, r.Key)
			if r.Value == nil {
				delete(latest, k)
			} else {
				latest[k] = r.Value
			}
		}
		want := map[string][]byte{}
		for _, e := range streamtest.OpenStore(d, store, codec.Bytes{}, codec.Bytes{}).All() {
			want[fmt.Sprintf("%d/%x", e.Partition, e.Key)] = e.Value
		}
		if len(latest) != len(want) {
			t.Errorf("changelog of %s holds %d keys, the driver's store %d", store, len(latest), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(latest[k], v) {
				t.Errorf("changelog of %s: %s = %x, the driver's %x", store, k, latest[k], v)
			}
		}
	}
}

func kvList(kvs []stream.KeyValue[string, string]) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key+"="+kv.Value)
	}
	return out
}

func sameMultiset(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return strings.Join(a, " ") == strings.Join(b, " ")
}

// Timers on both clocks, end to end: a wall-clock timer counts its ticks in
// a store and emits each tick in the same transaction, so the ticks each
// task emits, read committed, are 1, 2, 3, ... with no gap or repeat; a
// stream-time timer fires once per 10 s of stream time crossed.
func TestIntegrationTimers(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce} {
		t.Run(g.String(), func(t *testing.T) { testTimers(t, g) })
	}
}

func testTimers(t *testing.T, g Guarantee) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "timers")
	events, ticksTopic := app+"-events", app+"-ticks"
	for _, tp := range []string{events, ticksTopic} {
		testbroker.CreateTopic(t, brokers, tp, 2, nil)
	}
	b := stream.NewBuilder()
	ticks := stream.DeclareStore(b, "ticks", codec.String{}, codec.Int64{})
	out := stream.DeclareOutput(b, ticksTopic, codec.String{}, codec.String{})
	tick := func(h *stream.Handle, now time.Time) error {
		n, _, err := stream.Get(h, ticks, "wall")
		if err != nil {
			return err
		}
		if err := stream.Put(h, ticks, "wall", n+1); err != nil {
			return err
		}
		return stream.Emit(h, out, fmt.Sprintf("wall-%d", h.Partition()), fmt.Sprint(n+1))
	}
	streamTick := func(h *stream.Handle, now time.Time) error {
		return stream.Emit(h, out, fmt.Sprintf("stream-%d", h.Partition()), fmt.Sprint(now.Sub(winT0).Seconds()))
	}
	stream.Process(stream.Source(b, events, codec.String{}, codec.String{}, stream.Named("events")),
		func(*stream.Handle, stream.Record[string, string]) error { return nil },
		stream.Uses(ticks), stream.EmitsTo(out),
		stream.Every(300*time.Millisecond, stream.WallClock, tick),
		stream.Every(10*time.Second, stream.StreamTime, streamTick), stream.Named("tick"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}

	p, err := New(topo, append(testOpts(t, brokers, app), WithGuarantee(g))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	s := time.Second
	// Partition by explicit partition: one task gets 1, 12, 15, 31 s
	// (crosses 10, 30: two stream ticks), the other 5 s (none).
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(events), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for _, at := range []time.Duration{1 * s, 12 * s, 15 * s, 31 * s} {
		recs = append(recs, &kgo.Record{Partition: 0, Value: []byte("e"), Timestamp: winT0.Add(at)})
	}
	recs = append(recs, &kgo.Record{Partition: 1, Value: []byte("e"), Timestamp: winT0.Add(5 * s)})
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Run until both tasks have ticked 3 times on the wall clock and the
	// stream-time ticks are out (read committed), or a minute passed: a
	// loaded machine may take longer than the 1 s this needs, and the
	// checks below say what is missing.
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if timersDone(testbroker.ReadCommittedWithin(t, 30*time.Second, brokers, ticksTopic)) {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	last := map[string]int{}
	var streamTicks []string
	for _, r := range testbroker.ReadCommitted(t, brokers, ticksTopic) {
		k := string(r.Key)
		if strings.HasPrefix(k, "stream-") {
			streamTicks = append(streamTicks, k+"="+string(r.Value))
			continue
		}
		var n int
		fmt.Sscan(string(r.Value), &n)
		if n != last[k]+1 {
			t.Errorf("%s: tick %d follows %d", k, n, last[k])
		}
		last[k] = n
	}
	if last["wall-0"] < 3 || last["wall-1"] < 3 {
		t.Errorf("wall-clock ticks %v, want at least 3 per task within a minute", last)
	}
	if strings.Join(streamTicks, " ") != "stream-0=12 stream-0=31" {
		t.Errorf("stream-time ticks %v, want stream-0=12 stream-0=31", streamTicks)
	}
	if m := p.Metrics().Stages["events"]; m.TimerErrors != 0 {
		t.Errorf("metrics %+v", m)
	}
}

// timersDone reports whether the ticks topic holds at least 3 wall-clock
// ticks of each task and both stream-time ticks.
func timersDone(recs []*kgo.Record) bool {
	wall := map[string]int{}
	streamTicks := 0
	for _, r := range recs {
		if k := string(r.Key); strings.HasPrefix(k, "stream-") {
			streamTicks++
		} else {
			wall[k]++
		}
	}
	return wall["wall-0"] >= 3 && wall["wall-1"] >= 3 && streamTicks >= 2
}

// A crash between the Kafka commit and the Pebble apply of the transaction
// that moved stream time and released a window: Pebble still holds the old
// stream time. The restart on the same state directory replays the
// changelog tail, stream time included, so the record that is late after
// the release is late after the restart too, and the window is not
// released twice.
func TestIntegrationStreamTimeCrashBetweenCommitAndApply(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "wincrash")
	clicks, updates, final := app+"-clicks", app+"-updates", app+"-final"
	for _, tp := range []string{clicks, updates, final} {
		testbroker.CreateTopic(t, brokers, tp, 1, nil)
	}
	topo := windowedCounts(t, clicks, updates, final)
	s := time.Second
	produceClicks(t, brokers, clicks, click{"a", 1 * s}, click{"a", 2 * s}, click{"a", 20 * s})
	opts := append(testOpts(t, brokers, app), ErrorPolicy(Skip), MaxRecordsPerTransaction(1))
	p, err := New(topo, opts...)
	if err != nil {
		t.Fatal(err)
	}
	commits := 0
	p.hooks.afterCommit = func(*stage) error {
		if commits++; commits == 3 { // the transaction of a@20s
			return errSimulatedCrash
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("Run: %v, want the simulated crash", err)
	}
	if got := kvs(testbroker.ReadCommitted(t, brokers, final)); strings.Join(got, " ") != "a@0-10=2" {
		t.Fatalf("final after the crash %v, want a@0-10=2 (committed before the crash)", got)
	}

	produceClicks(t, brokers, clicks, click{"a", 3 * s}, click{"a", 40 * s})
	p = runUntil(t, topo, opts[:len(opts)-1], brokers, final, 2) // opts keep the state directory
	if m := p.Metrics().Stages["clicks"]; m.Late != 1 || m.RestoredRecords == 0 {
		t.Errorf("metrics %+v: want 1 late record and a replayed changelog tail", m)
	}
	if got := kvs(testbroker.ReadCommitted(t, brokers, final)); strings.Join(got, " ") != "a@0-10=2 a@20-30=1" {
		t.Errorf("final %v, want a@0-10=2 a@20-30=1", got)
	}
}
