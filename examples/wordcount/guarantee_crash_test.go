package main

import (
	"context"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestCrashWordcountGuarantees runs the crash test of the wordcount under
// at-least-once and at-most-once: one instance, a backlog and a steady
// stream of input, kill -9 at random moments while the input is behind. It
// asserts what each guarantee promises and reports what it does not:
// at-least-once loses no word occurrence (every final count is at least the
// input's) and reports the duplicates; at-most-once processes none twice
// (every final count is at most the input's) and reports the losses.
// TestCrashWordcount is the exactly-once run of the same test.
func TestCrashWordcountGuarantees(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := crashtest.Seed(t)
	bin := crashtest.Build(t, "wordcount")
	for _, g := range []string{"at-least-once", "at-most-once"} {
		t.Run(g, func(t *testing.T) {
			crashGuarantee(t, bin, g, seed)
		})
	}
}

func crashGuarantee(t *testing.T, bin, guarantee string, seed uint64) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "guar")
	input, output := app+"-lines", app+"-counts"
	crashtest.CreateTopics(t, brokers, 4, nil, input, output)

	gen := newLineGen(rng.Uint64(), 400)
	produce(t, brokers, input, gen.next(15000))
	h := newHarness(t, bin, brokers, app, input, output)
	h.Args = append(h.Args, "-guarantee", guarantee)
	defer h.KillAll()
	stopInput := h.steadyInput(gen, 100, 50*time.Millisecond)

	const kills = 10
	working, wiped := 0, 0
	h.Start("i1")
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(300+rng.IntN(2000)) * time.Millisecond)
		if h.working() {
			working++
		}
		h.Kill("i1", 0)
		if rng.IntN(4) == 0 {
			os.RemoveAll(h.StateDir("i1"))
			wiped++
		}
		h.Start("i1")
	}
	stopInput()
	want, total := gen.counts()
	if !h.drained(3 * time.Minute) {
		t.Fatalf("the instance did not catch up with the input within 3 minutes")
	}
	h.Stop("i1")

	final := map[string]int{}
	for _, r := range testbroker.ReadCommitted(t, brokers, output) {
		n, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("output %q=%q is not a count", r.Key, r.Value)
		}
		final[string(r.Key)] = n
	}
	dups, lost := 0, 0
	var over, under []string
	for w, n := range want {
		switch d := final[w] - n; {
		case d > 0:
			dups += d
			over = append(over, w)
		case d < 0:
			lost -= d
			under = append(under, w)
		}
	}
	sort.Strings(over)
	sort.Strings(under)
	t.Logf("%s: %d kills, %d while it was processing, %d state directories wiped; %d words: %d counted twice (%d words over), %d lost (%d words under)",
		guarantee, kills, working, wiped, total, dups, len(over), lost, len(under))
	switch guarantee {
	case "at-least-once":
		if lost > 0 {
			t.Errorf("at-least-once lost %d word occurrences (e.g. %v)", lost, under[:min(5, len(under))])
		}
	case "at-most-once":
		if dups > 0 {
			t.Errorf("at-most-once counted %d word occurrences twice (e.g. %v)", dups, over[:min(5, len(over))])
		}
	}
	if working == 0 {
		t.Errorf("no kill landed while the instance was processing: the test proved nothing (seed %d)", seed)
	}
}

// working reports whether the instance is processing input at this moment:
// the first stage's committed offsets move within 300 ms. (At-most-once
// commits before processing, so a lag behind the input's end says nothing
// there; a moving commit does, for every guarantee.)
func (h *harness) working() bool {
	adm := testbroker.Admin(h.T, h.Brokers)
	sum := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		committed, err := adm.FetchOffsetsForTopics(ctx, h.App+"-split", h.input)
		if err != nil {
			return -1
		}
		var s int64
		committed.Each(func(o kadm.OffsetResponse) { s += max(o.At, 0) })
		return s
	}
	before := sum()
	time.Sleep(300 * time.Millisecond)
	return sum() != before
}

// drained waits until both stages committed everything their inputs hold and
// the output has not grown for a second (at-most-once commits before it
// processes, so caught-up offsets alone do not mean the work is done).
func (h *harness) drained(timeout time.Duration) bool {
	adm := testbroker.Admin(h.T, h.Brokers)
	caughtUp := func(group, topic string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false
		}
		committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			return false
		}
		ok := true
		ends.Each(func(o kadm.ListedOffset) {
			if c, found := committed.Lookup(topic, o.Partition); o.Offset > 0 && (!found || c.At < o.Offset) {
				ok = false
			}
		})
		return ok
	}
	outputEnd := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, h.output)
		if err != nil {
			return -1
		}
		var s int64
		ends.Each(func(o kadm.ListedOffset) { s += o.Offset })
		return s
	}
	deadline := time.Now().Add(timeout)
	last, stableSince := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		if end := outputEnd(); end != last {
			last, stableSince = end, time.Now()
		}
		if time.Since(stableSince) > time.Second && caughtUp(h.App+"-split", h.input) && caughtUp(h.App+"-by-word", h.App+"-by-word-repartition") {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}
