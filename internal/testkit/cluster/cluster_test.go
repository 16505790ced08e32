package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestStall(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	a := gp{"app-split", "lines", 0}
	b := gp{"app-split", "lines", 1}
	c := gp{"app-count", "rep", 0} // caught up at the fault: not busy
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := &CommitWatch{}
	w.mu.samples = []sample{
		{at: at(0), offs: map[gp]int64{a: 10, b: 10, c: 5}, ends: map[gp]int64{a: 50, b: 50, c: 5}},
		{at: at(900), offs: map[gp]int64{a: 20, b: 15, c: 5}, ends: map[gp]int64{a: 60, b: 60, c: 5}},
		// The fault at 1000 ms. A sample that could not read b.
		{at: at(1200), offs: map[gp]int64{a: 20}, ends: map[gp]int64{}},
		{at: at(4000), offs: map[gp]int64{a: 25, b: 15, c: 5}, ends: map[gp]int64{}},
		{at: at(9000), offs: map[gp]int64{a: 30, b: 16, c: 9}, ends: map[gp]int64{}},
	}
	st := w.Stall(at(1000))
	if st.Partitions != 2 || st.Stuck != 0 || st.First != 3*time.Second || st.All != 8*time.Second || st.Slowest != b.String() {
		t.Errorf("Stall = %+v, want 2 busy partitions, first after 3s, all after 8s (slowest %s)", st, b)
	}
	if !strings.Contains(st.String(), "all 2 busy partitions committing again after 8s (first after 3s") {
		t.Errorf("Stall.String() = %q", st.String())
	}

	// b never moves again: stuck, counted until the last sample.
	w.mu.samples[4].offs[b] = 15
	st = w.Stall(at(1000))
	if st.Stuck != 1 || st.All != 8*time.Second || !strings.Contains(st.String(), "1 NEVER committed again") {
		t.Errorf("Stall with b stuck = %+v (%s)", st, st)
	}

	// No sample before the fault: nothing to compare with.
	if st := w.Stall(t0.Add(-time.Second)); st.Partitions != 0 {
		t.Errorf("Stall before the first sample = %+v, want no busy partition", st)
	}
}

func TestMostCommon(t *testing.T) {
	for _, tc := range []struct {
		m    map[string]int32
		want int32
	}{
		{nil, -1},
		{map[string]int32{"a": 2}, 2},
		{map[string]int32{"a": 2, "b": 3, "c": 3}, 3},
		{map[string]int32{"a": 3, "b": 1}, 1}, // a tie: the lowest id
	} {
		if got := MostCommon(tc.m); got != tc.want {
			t.Errorf("MostCommon(%v) = %d, want %d", tc.m, got, tc.want)
		}
	}
}
