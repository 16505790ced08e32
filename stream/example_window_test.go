package stream_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// Clicks per user per minute, emitted once per window when it closes (a
// minute plus ten seconds of grace after its start), run in the test
// driver.
func ExampleSuppressUntilWindowCloses() {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	perMinute := stream.WindowedCount(
		stream.WindowedBy(stream.GroupByKey(clicks, codec.String{}, codec.String{}),
			stream.Tumbling(time.Minute).Grace(10*time.Second)),
		stream.Named("clicks-per-minute"))
	final := stream.SuppressUntilWindowCloses(perMinute, stream.Named("final-clicks-per-minute"))
	stream.To(stream.Map(final.ToStream(), func(w stream.Windowed[string], n int64) (string, int64) {
		return w.Key + "@" + w.Window.Start.Format("15:04"), n
	}), "clicks-per-minute", codec.String{}, codec.Int64Text{})
	topo, err := b.Build()
	if err != nil {
		fmt.Println(err)
		return
	}

	d := streamtest.New(exampleT{}, topo)
	in := streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})
	out := streamtest.NewOutput(d, "clicks-per-minute", codec.String{}, codec.String{})
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	in.PipeAt(t0.Add(5*time.Second), "ann", "/a")
	in.PipeAt(t0.Add(50*time.Second), "ann", "/b")
	in.PipeAt(t0.Add(65*time.Second), "bob", "/c") // 12:01: the 12:00 window is in its grace period
	in.PipeAt(t0.Add(59*time.Second), "ann", "/d") // late but within the grace: counted
	in.PipeAt(t0.Add(70*time.Second), "bob", "/e") // stream time 12:01:10: 12:00 closes
	fmt.Println(out.ReadKeyValues())
	err = in.Send(streamtest.Record[string, string]{Key: "ann", Value: "/f", Timestamp: t0.Add(30 * time.Second)})
	fmt.Println(err != nil, errors.Is(err, stream.ErrLateRecord))
	d.AdvanceStreamTime(t0.Add(time.Hour)) // close the rest
	fmt.Println(out.ReadKeyValues())
	// Output:
	// [{ann@12:00 3}]
	// true true
	// [{bob@12:01 2}]
}

// Sessions of activity per user: clicks at most ten minutes apart are one
// session; a click that bridges two sessions merges them.
func ExampleSessionAggregate() {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	sessions := stream.WindowedBy(stream.GroupByKey(clicks, codec.String{}, codec.String{}),
		stream.Sessions(10*time.Minute).Grace(10*time.Minute))
	pages := stream.SessionAggregate(sessions,
		func() string { return "" },
		func(_ string, page, acc string) string { return acc + page },
		func(_ string, a, b string) string { return a + b },
		codec.String{}, stream.Named("session-pages"))
	stream.To(stream.Map(stream.SuppressUntilWindowCloses(pages, stream.Named("final-sessions")).ToStream(),
		func(w stream.Windowed[string], p string) (string, string) {
			return fmt.Sprintf("%s %s-%s", w.Key, w.Window.Start.Format("15:04"), w.Window.End.Format("15:04")), p
		}), "sessions", codec.String{}, codec.String{})
	topo, _ := b.Build()

	d := streamtest.New(exampleT{}, topo)
	in := streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		min  int
		page string
	}{{0, "a"}, {3, "b"}, {20, "c"}, {12, "x"}} {
		in.PipeAt(t0.Add(time.Duration(c.min)*time.Minute), "ann", c.page)
	}
	d.AdvanceStreamTime(t0.Add(time.Hour))
	for _, kv := range streamtest.NewOutput(d, "sessions", codec.String{}, codec.String{}).ReadKeyValues() {
		fmt.Println(kv.Key, kv.Value)
	}
	// Output:
	// ann 12:00-12:20 abcx
}

// Clicks joined with the page views of the same user at most a minute
// apart.
func ExampleStreamJoin() {
	b := stream.NewBuilder()
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	joined := stream.StreamJoin(views, clicks, stream.Within(time.Minute),
		func(user, page, ad string) string { return page + " -> " + ad },
		codec.String{}, codec.String{}, stream.Named("view-clicks"))
	stream.To(joined, "view-clicks", codec.String{}, codec.String{})
	topo, _ := b.Build()

	d := streamtest.New(exampleT{}, topo)
	v := streamtest.NewInput(d, "views", codec.String{}, codec.String{})
	c := streamtest.NewInput(d, "clicks", codec.String{}, codec.String{})
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	v.PipeAt(t0, "ann", "/home")
	c.PipeAt(t0.Add(30*time.Second), "ann", "ad-1")  // within a minute: joined
	c.PipeAt(t0.Add(2*time.Minute), "ann", "ad-2")   // too far
	v.PipeAt(t0.Add(90*time.Second), "ann", "/shop") // meets ad-1 and ad-2
	fmt.Println(streamtest.NewOutput(d, "view-clicks", codec.String{}, codec.String{}).ReadValues())
	// Output:
	// [/home -> ad-1 /shop -> ad-1 /shop -> ad-2]
}

// A timer on stream time: every 10 seconds of event time, each task emits
// how many records it saw since the last tick.
func ExampleEvery() {
	b := stream.NewBuilder()
	seen := stream.DeclareStore(b, "seen", codec.String{}, codec.Int64{})
	rates := stream.DeclareOutput(b, "rates", codec.String{}, codec.Int64Text{})
	events := stream.Source(b, "events", codec.String{}, codec.String{}, stream.Named("events"))
	stream.Process(events, func(h *stream.Handle, r stream.Record[string, string]) error {
		n, _, err := stream.Get(h, seen, "n")
		if err != nil {
			return err
		}
		return stream.Put(h, seen, "n", n+1)
	}, stream.Uses(seen), stream.EmitsTo(rates), stream.Named("rate"),
		stream.Every(10*time.Second, stream.StreamTime, func(h *stream.Handle, now time.Time) error {
			n, _, err := stream.Get(h, seen, "n")
			if err != nil {
				return err
			}
			if err := stream.Put(h, seen, "n", 0); err != nil {
				return err
			}
			return stream.Emit(h, rates, now.Format("15:04:05"), n)
		}))
	topo, _ := b.Build()

	d := streamtest.New(exampleT{}, topo)
	in := streamtest.NewInput(d, "events", codec.String{}, codec.String{})
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []int{1, 4, 8, 12, 15, 23} {
		in.PipeAt(t0.Add(time.Duration(s)*time.Second), "", "e")
	}
	for _, kv := range streamtest.NewOutput(d, "rates", codec.String{}, codec.Int64Text{}).ReadKeyValues() {
		fmt.Println(kv.Key, kv.Value)
	}
	// Output:
	// 12:00:12 4
	// 12:00:23 2
}
