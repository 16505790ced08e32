package stream_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// clicksAndViews joins clicks (left) with views (right) within 10 s, grace
// 2 s, writing "click+view" (or "click+-", "-+view") with its timestamp in
// seconds since t0 to "joined".
func clicksAndViews(t *testing.T, op string) *streamtest.Driver {
	t.Helper()
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	w := stream.Within(10 * time.Second).Grace(2 * time.Second)
	var out stream.Stream[string, string]
	switch op {
	case "inner":
		out = stream.StreamJoin(clicks, views, w, func(_, c, v string) string { return c + "+" + v },
			codec.String{}, codec.String{}, stream.Named("join"))
	case "left":
		out = stream.StreamLeftJoin(clicks, views, w, func(_, c, v string, ok bool) string {
			if !ok {
				v = "-"
			}
			return c + "+" + v
		}, codec.String{}, codec.String{}, stream.Named("join"))
	case "outer":
		out = stream.StreamOuterJoin(clicks, views, w, func(_, c string, cok bool, v string, vok bool) string {
			if !cok {
				c = "-"
			}
			if !vok {
				v = "-"
			}
			return c + "+" + v
		}, codec.String{}, codec.String{}, stream.Named("join"))
	}
	stream.Process(out, func(h *stream.Handle, r stream.Record[string, string]) error { return nil })
	stream.To(stream.Map(out, func(k, v string) (string, string) { return k, v }), "joined", codec.String{}, codec.String{})
	d, topo := drive(t, b)
	if s := topology.Of(topo).Stages; len(s) != 1 || len(s[0].Inputs) != 2 {
		t.Fatalf("want one stage reading both streams:\n%v", topo)
	}
	return d
}

// joinedOut is the output of each driver, read across calls of joined.
var joinedOut = map[*streamtest.Driver]*streamtest.Output[string, string]{}

// joined reads "key=value@seconds" from the join's output, what was not
// read yet.
func joined(d *streamtest.Driver) string {
	o := joinedOut[d]
	if o == nil {
		o = streamtest.NewOutput(d, "joined", codec.String{}, codec.String{})
		joinedOut[d] = o
	}
	var parts []string
	for _, r := range o.ReadAll() {
		parts = append(parts, fmt.Sprintf("%s=%s@%s", r.Key, r.Value, secs(r.Timestamp)))
	}
	return strings.Join(parts, " ")
}

func TestStreamJoinWindowEdges(t *testing.T) {
	d := clicksAndViews(t, "inner")
	clicks, views := strIn(d, "clicks"), strIn(d, "views")
	clicks.PipeAt(at(20*time.Second), "u", "c1")
	views.PipeAt(at(10*time.Second), "u", "v-10") // exactly 10 s before: joins
	views.PipeAt(at(30*time.Second), "u", "v30")  // exactly 10 s after: joins
	views.PipeAt(at(31*time.Second), "u", "v31")  // 11 s after: no
	views.PipeAt(at(25*time.Second), "x", "vx")   // another key: no
	if got, want := joined(d), "u=c1+v-10@20 u=c1+v30@30"; got != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
	// A later click meets every buffered view of its window, in time order.
	clicks.PipeAt(at(30*time.Second), "u", "c2")
	if got, want := joined(d), "u=c2+v30@30 u=c2+v31@31"; got != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
	// Stream time 31 s: a record at 19 s (19 + 10 + 2 = 31) is at the grace
	// limit and still joins; one at 18.999 s is late.
	views.PipeAt(at(19*time.Second), "u", "v19")
	if got, want := joined(d), "u=c1+v19@20"; got != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
	err := views.Send(streamtest.Record[string, string]{Key: "u", Value: "late", Timestamp: at(19*time.Second - time.Millisecond)})
	if !errors.Is(err, stream.ErrLateRecord) {
		t.Fatalf("err %v, want a late record", err)
	}
	// Buffered records expire with stream time: everything is gone after
	// the last timestamp + 2 windows + grace.
	d.AdvanceStreamTime(at(31*time.Second + 22*time.Second + time.Millisecond))
	if n := streamtest.OpenStore(d, "join", codec.Bytes{}, codec.Bytes{}).Len(); n != 0 {
		t.Fatalf("%d buffer entries left", n)
	}
}

func TestStreamLeftAndOuterJoin(t *testing.T) {
	d := clicksAndViews(t, "left")
	clicks, views := strIn(d, "clicks"), strIn(d, "views")
	clicks.PipeAt(at(0), "u", "c1")
	views.PipeAt(at(5*time.Second), "u", "v1")
	clicks.PipeAt(at(1*time.Second), "w", "c3") // no view: emitted when it expires
	views.PipeAt(at(2*time.Second), "z", "vz")  // a view alone: dropped in a left join
	if got, want := joined(d), "u=c1+v1@5"; got != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
	// c3 (1 s) can pair until stream time passes 1 + 2*10 + 2 = 23 s.
	d.AdvanceStreamTime(at(23 * time.Second))
	if got := joined(d); got != "" {
		t.Fatalf("joined %q before expiry", got)
	}
	d.AdvanceStreamTime(at(23*time.Second + time.Millisecond))
	if got, want := joined(d), "w=c3+-@1"; got != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
	d.AdvanceStreamTime(at(time.Hour))
	if got := joined(d); got != "" {
		t.Fatalf("joined %q: c1 was paired and must not come back", got)
	}

	d = clicksAndViews(t, "outer")
	clicks, views = strIn(d, "clicks"), strIn(d, "views")
	views.PipeAt(at(0), "u", "v0")              // paired later
	clicks.PipeAt(at(3*time.Second), "u", "c")  // pairs with v0
	views.PipeAt(at(1*time.Second), "z", "vz")  // alone
	clicks.PipeAt(at(2*time.Second), "y", "cy") // alone
	d.AdvanceStreamTime(at(time.Hour))
	if got, want := joined(d), "u=c+v0@3 z=-+vz@1 y=cy+-@2"; got != want {
		t.Fatalf("joined %q, want %q", got, want)
	}
}

func TestStreamJoinCoPartitioning(t *testing.T) {
	b := stream.NewBuilder()
	a := stream.Source(b, "a", codec.String{}, codec.String{})
	c := stream.SelectKey(stream.Source(b, "c", codec.String{}, codec.String{}), func(k, v string) string { return v })
	stream.StreamJoin(a, c, stream.Within(time.Second), func(_, x, y string) string { return x + y }, codec.String{}, codec.String{})
	i := stream.Source(b, "i", codec.Int64{}, codec.String{})
	j := stream.Source(b, "j", codec.Int64Text{}, codec.String{})
	stream.StreamJoin(i, j, stream.Within(time.Second), func(_ int64, x, y string) string { return x + y }, codec.String{}, codec.String{})
	_, err := b.Build()
	if !errors.Is(err, stream.ErrNotCoPartitioned) || strings.Count(err.Error(), "\n") != 1 {
		t.Fatalf("Build: %v", err)
	}
}
