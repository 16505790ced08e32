package stream_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// The outputs of stream-time hooks (released windows, unpaired join
// results, stream-time timers) are judged on their own: a late one is
// dropped and counted, a failing one goes to the runtime's policy, and
// neither fails the input record that moved stream time (which would undo
// its stream-time advance and fail every later record the same way).
//
// hookRunner runs one stage's Program as the runtime does: effects staged
// in an exec.Scope and applied only if the call succeeded, a failing record
// dropped as processor.Skip drops it. Its Base implements exec.Drops with
// the policy given (or not at all, policy "").
type hookRunner struct {
	t        *testing.T
	prog     exec.Program
	sc       exec.Scope
	stores   map[string]map[string][]byte
	policy   string // "skip", "fail" or "" (the Base is no exec.Drops)
	maxBytes int

	out        []exec.Output
	failed     []error // input records that failed (and were skipped)
	late       []error // DropLate reports
	hookFailed []error // DropFailed reports
	offset     int64
}

func newHookRunner(t *testing.T, b *stream.Builder, policy string) *hookRunner {
	t.Helper()
	topo, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	stages := topology.Of(topo).Stages
	if len(stages) != 1 {
		t.Fatalf("want one stage:\n%v", topo)
	}
	r := &hookRunner{t: t, prog: stages[0].Program("app"), stores: map[string]map[string][]byte{},
		policy: policy, maxBytes: 1 << 20}
	for _, st := range stages[0].Stores {
		r.stores[st.Name] = map[string][]byte{}
	}
	return r
}

// hookBase is the runner's exec.Base.
type hookBase struct{ r *hookRunner }

func (b hookBase) Partition() int32 { return 0 }

func (b hookBase) HasStore(name string) bool { _, ok := b.r.stores[name]; return ok }

func (b hookBase) Get(store string, key []byte) ([]byte, bool, error) {
	v, ok := b.r.stores[store][string(key)]
	return v, ok, nil
}

func (b hookBase) Scan(store string, lower, upper []byte, fn func(k, v []byte) error) error {
	var keys []string
	for k := range b.r.stores[store] {
		if k >= string(lower) && (upper == nil || k < string(upper)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn([]byte(k), b.r.stores[store][k]); err != nil {
			return err
		}
	}
	return nil
}

// dropBase is a hookBase that takes the reports of exec.Drops.
type dropBase struct{ hookBase }

func (b dropBase) DropLate(err error) { b.r.late = append(b.r.late, err) }

func (b dropBase) DropFailed(err error) error {
	b.r.hookFailed = append(b.r.hookFailed, err)
	if b.r.policy == "fail" {
		return err
	}
	return nil
}

// pipe processes one record of topic at ts seconds after t0.
func (r *hookRunner) pipe(topic, key, value string, secs int) error {
	var base exec.Base = hookBase{r}
	if r.policy != "" {
		base = dropBase{hookBase{r}}
	}
	r.sc.Begin(base, r.maxBytes)
	rec := &exec.Record{Topic: topic, Offset: r.offset, Key: []byte(key), Value: []byte(value),
		Timestamp: at(time.Duration(secs) * time.Second)}
	r.offset++
	err := r.prog(&r.sc, rec)
	if err == nil {
		err = r.sc.Err()
	}
	if err != nil {
		r.failed = append(r.failed, err)
		return err
	}
	for _, w := range r.sc.Writes() {
		if w.Value == nil {
			delete(r.stores[w.Store], string(w.Key))
		} else {
			r.stores[w.Store][string(w.Key)] = w.Value
		}
	}
	r.out = append(r.out, r.sc.Emits()...)
	return nil
}

// take returns "key=value" of the outputs to topic so far, and forgets all
// outputs.
func (r *hookRunner) take(topic string) string {
	var parts []string
	for _, o := range r.out {
		if o.Topic == topic {
			parts = append(parts, string(o.Key)+"="+string(o.Value))
		}
	}
	r.out = nil
	return strings.Join(parts, " ")
}

// leftJoinIntoWindows joins clicks with views (left join, within 10 s, no
// grace) and counts the results per key in tumbling 10 s windows, in the
// join's stage: an unpaired click expires 20 s after its timestamp, when its
// 10 s window has long closed.
func leftJoinIntoWindows() *stream.Builder {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	views := stream.Source(b, "views", codec.String{}, codec.String{}, stream.Named("views"))
	joined := stream.StreamLeftJoin(clicks, views, stream.Within(10*time.Second),
		func(_, c, v string, ok bool) string { return fmt.Sprint(c, "+", v, ok) },
		codec.String{}, codec.String{}, stream.Named("join"))
	counts := stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(joined, codec.String{}, codec.String{}),
		stream.Tumbling(10*time.Second)), stream.Named("per-10s"))
	windowedTo(counts, "counts")
	return b
}

// TestHookLateOutputIsDropped is issue 13's case: one unpaired left record
// expires into a closed window. It must be dropped and counted, and the
// record that moved stream time, and the ones after it, must go on.
func TestHookLateOutputIsDropped(t *testing.T) {
	for _, policy := range []string{"skip", "fail", ""} {
		t.Run("policy="+policy, func(t *testing.T) {
			r := newHookRunner(t, leftJoinIntoWindows(), policy)
			if err := r.pipe("clicks", "u", "c", 0); err != nil { // never paired
				t.Fatal(err)
			}
			// Five on-time records; the first moves stream time to 21 s,
			// where u's click expires and flows, with its timestamp 0,
			// into the window [0,10), closed since 10 s.
			for _, in := range []struct {
				topic, key string
				secs       int
			}{{"views", "v", 21}, {"clicks", "v", 21}, {"clicks", "w", 22}, {"views", "w", 23}, {"clicks", "x", 24}} {
				if err := r.pipe(in.topic, in.key, "p", in.secs); err != nil {
					t.Errorf("on-time record %s %s@%d: %v", in.topic, in.key, in.secs, err)
				}
			}
			if got := r.take("counts"); got != "v@20-30=1 w@20-30=1" {
				t.Errorf("counts %q", got)
			}
			if policy == "" {
				return // nothing to count with
			}
			if len(r.late) != 1 || len(r.hookFailed) != 0 {
				t.Fatalf("late drops %v, failed hook outputs %v; want one late drop", r.late, r.hookFailed)
			}
			var le *stream.LateRecordError
			if !errors.As(r.late[0], &le) || !errors.Is(r.late[0], stream.ErrLateRecord) ||
				le.Operator != `WindowedCount "per-10s"` || !le.Timestamp.Equal(at(0)) || !le.StreamTime.Equal(at(21*time.Second)) {
				t.Errorf("late drop %#v", r.late[0])
			}
		})
	}
}

// TestHookLateOutputIsDroppedNotItsBranches checks that a late drop drops
// only what the late operator would have done: a suppressed window released
// into a second windowed operator (same stage) that has closed the matching
// window is dropped there, while its other downstream paths (here a sink)
// keep it, as in Kafka Streams.
func TestHookLateOutputIsDroppedNotItsBranches(t *testing.T) {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	counts := stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(clicks, codec.String{}, codec.String{}),
		stream.Tumbling(10*time.Second)), stream.Named("per-10s"))
	final := stream.SuppressUntilWindowCloses(counts, stream.Named("final"))
	windowedTo(final, "final")
	// A roll-up of the final counts per minute, without a repartition: the
	// released window's timestamp is its last update, so the last window
	// of a minute comes when that minute has closed (no grace).
	rollup := stream.WindowedCount(stream.WindowedBy(
		stream.GroupByKey(final.ToStream(), stream.WindowedCodec[string](codec.String{}), codec.Int64{}),
		stream.Tumbling(time.Minute)), stream.Named("per-minute"))
	stream.To(stream.Map(rollup.ToStream(), func(w stream.Windowed[stream.Windowed[string]], n int64) (string, string) {
		return windowKey(w.Key) + "/" + secs(w.Window.Start), fmt.Sprint(n)
	}), "rollup", codec.String{}, codec.String{})

	r := newHookRunner(t, b, "skip")
	for _, s := range []int{5, 55, 61, 75} {
		if err := r.pipe("clicks", "a", "p", s); err != nil {
			t.Fatalf("record at %d s: %v", s, err)
		}
	}
	// At 55 s, [0,10) was released (timestamp 5) into the minute [0,60);
	// at 61 s, [50,60) was released with timestamp 55 into the same
	// minute, closed at 60: dropped there, but still written to "final";
	// at 75 s, [60,70) went into the minute [60,120).
	var finals, rolled []string
	for _, o := range r.out {
		switch o.Topic {
		case "final":
			finals = append(finals, string(o.Key)+"="+string(o.Value))
		case "rollup":
			rolled = append(rolled, string(o.Key)+"="+string(o.Value))
		}
	}
	if got := strings.Join(finals, " "); got != "a@0-10=1 a@50-60=1 a@60-70=1" {
		t.Errorf("final %q", got)
	}
	if got := strings.Join(rolled, " "); got != "a@0-10/0=1 a@60-70/60=1" {
		t.Errorf("rollup %q", got)
	}
	if len(r.late) != 1 {
		t.Fatalf("late drops %v, want one", r.late)
	}
	var le *stream.LateRecordError
	if !errors.As(r.late[0], &le) || le.Operator != `WindowedCount "per-minute"` || !le.Timestamp.Equal(at(55*time.Second)) {
		t.Errorf("late drop %v", r.late[0])
	}
	if len(r.failed) != 0 {
		t.Errorf("failed records %v", r.failed)
	}
}

var errBadWindow = errors.New("test: cannot handle this window")

// suppressIntoProcess releases final counts (tumbling 10 s, no grace) to
// "final", and to a Process function that fails for key "bad", and to
// "big" as a value of big bytes for key "big".
func suppressIntoProcess() *stream.Builder {
	b := stream.NewBuilder()
	clicks := stream.Source(b, "clicks", codec.String{}, codec.String{}, stream.Named("clicks"))
	counts := stream.WindowedCount(stream.WindowedBy(stream.GroupByKey(clicks, codec.String{}, codec.String{}),
		stream.Tumbling(10*time.Second)), stream.Named("per-10s"))
	final := stream.SuppressUntilWindowCloses(counts, stream.Named("final"))
	windowedTo(final, "final") // first, so that a failure after it must undo it
	stream.Process(final.ToStream(), func(_ *stream.Handle, r stream.Record[stream.Windowed[string], int64]) error {
		if r.Key.Key == "bad" {
			return errBadWindow
		}
		return nil
	}, stream.Named("check"))
	stream.To(stream.Map(final.ToStream(), func(w stream.Windowed[string], n int64) (string, string) {
		if w.Key == "big" {
			return w.Key, strings.Repeat("x", 2000)
		}
		return w.Key, "small"
	}), "big", codec.String{}, codec.String{})
	return b
}

// TestHookFailedOutputGoesToPolicy: a window whose release fails downstream
// (a user function's error, an output too large) is the release's failure:
// under Skip it is dropped, all of it, and the record that moved stream
// time goes on with the other windows it released; under Fail the record
// fails with a *HookError. Before, the record failed, its stream-time
// advance with it, and every later record failed again.
func TestHookFailedOutputGoesToPolicy(t *testing.T) {
	r := newHookRunner(t, suppressIntoProcess(), "skip")
	r.maxBytes = 1000
	for _, k := range []string{"bad", "good", "big"} {
		if err := r.pipe("clicks", k, "p", 1); err != nil {
			t.Fatal(err)
		}
	}
	r.take("final")
	for _, s := range []int{10, 11, 20} { // 10 s releases [0,10) of bad, good and big
		if err := r.pipe("clicks", "x", "p", s); err != nil {
			t.Errorf("record at %d s: %v", s, err)
		}
	}
	var finals []string
	for _, o := range r.out {
		if o.Topic == "final" {
			finals = append(finals, string(o.Key)+"="+string(o.Value))
		}
	}
	if got := strings.Join(finals, " "); got != "good@0-10=1 x@10-20=2" {
		t.Errorf("final %q: want the good window and x's, not bad's nor big's", got)
	}
	if len(r.hookFailed) != 2 {
		t.Fatalf("failed hook outputs %v, want bad's and big's", r.hookFailed)
	}
	var he *stream.HookError
	if !errors.As(r.hookFailed[0], &he) || !errors.Is(he, errBadWindow) ||
		he.Operator != `SuppressUntilWindowCloses "final"` || !he.Timestamp.Equal(at(time.Second)) || !he.StreamTime.Equal(at(10*time.Second)) {
		t.Errorf("failed hook output %#v", r.hookFailed[0])
	}
	if !errors.Is(r.hookFailed[1], exec.ErrRecordTooLarge) {
		t.Errorf("failed hook output %v, want too large", r.hookFailed[1])
	}

	// Under Fail, the record that moved stream time fails, with the
	// hook's error.
	r = newHookRunner(t, suppressIntoProcess(), "fail")
	if err := r.pipe("clicks", "bad", "p", 1); err != nil {
		t.Fatal(err)
	}
	err := r.pipe("clicks", "x", "p", 10)
	if !errors.As(err, &he) || !errors.Is(err, errBadWindow) {
		t.Fatalf("err %v, want a *HookError wrapping the function's", err)
	}
}

// TestHookFailedTimerGoesToPolicy: a stream-time timer's error is the
// timer's: under Skip the record that fired it, and its stream-time
// advance, go on without the timer's effects.
func TestHookFailedTimerGoesToPolicy(t *testing.T) {
	b := stream.NewBuilder()
	in := stream.Source(b, "in", codec.String{}, codec.String{}, stream.Named("in"))
	out := stream.DeclareOutput(b, "ticks", codec.String{}, codec.String{})
	fired := 0
	stream.Process(in, func(*stream.Handle, stream.Record[string, string]) error { return nil },
		stream.EmitsTo(out), stream.Named("ticker"),
		stream.Every(10*time.Second, stream.StreamTime, func(h *stream.Handle, now time.Time) error {
			fired++
			if err := stream.Emit(h, out, "tick", secs(now)); err != nil {
				return err
			}
			if now.Before(at(30 * time.Second)) {
				return errBadWindow
			}
			return nil
		}))
	r := newHookRunner(t, b, "skip")
	for _, s := range []int{5, 21, 22, 25, 31} {
		if err := r.pipe("in", "k", "v", s); err != nil {
			t.Errorf("record at %d s: %v", s, err)
		}
	}
	if got := r.take("ticks"); got != "tick=31" || fired != 2 || len(r.hookFailed) != 1 {
		t.Errorf("ticks %q, fired %d times, failed %v; want the 21 s tick dropped, the 31 s one kept", got, fired, r.hookFailed)
	}
}
