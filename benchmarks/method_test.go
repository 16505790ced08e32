package main

// Unit tests of the method's pieces. Their names start with TestSmoke so
// that make test, which runs the module's -run Smoke tests, runs them too.

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/processor"
)

// TestSmokeNextProbeRate walks the sustainable-throughput search through the
// cases it must handle: all passing, all failing, bisecting, and stopping.
func TestSmokeNextProbeRate(t *testing.T) {
	const drain = 1000.0
	probe := func(rate float64, passed bool) Probe { return Probe{TargetPerS: rate, Passed: passed} }
	for _, tc := range []struct {
		name   string
		probes []Probe
		want   float64 // 0: the search is done
	}{
		{"half passed: try 90%", []Probe{probe(500, true)}, 900},
		{"90% passed: 20% more", []Probe{probe(500, true), probe(900, true)}, 1080},
		{"far above the drain rate: done", []Probe{probe(500, true), probe(1300, true)}, 0},
		{"half failed: halve", []Probe{probe(500, false)}, 250},
		{"still failing: halve again", []Probe{probe(500, false), probe(250, false)}, 125},
		{"bisect", []Probe{probe(500, true), probe(900, false)}, 700},
		{"bisect from below", []Probe{probe(500, false), probe(250, true)}, 375},
		{"within 5%: done", []Probe{probe(500, true), probe(900, false), probe(700, true), probe(800, true), probe(850, true), probe(875, true)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := nextProbeRate(drain, tc.probes)
			if !ok {
				got = 0
			}
			if math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("next rate %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSmokeSetSustainable(t *testing.T) {
	r := Result{RecordsPerS: 1000, Probes: []Probe{
		{TargetPerS: 500, AchievedPerS: 498, Passed: true, P99Ms: 120},
		{TargetPerS: 900, AchievedPerS: 880, Passed: false},
		{TargetPerS: 700, AchievedPerS: 699, Passed: true, P99Ms: 180},
	}}
	setSustainable(&r)
	if r.SustainablePerS != 699 || r.SustainableP99Ms != 180 || !strings.Contains(r.SustainableNote, "900") {
		t.Errorf("sustainable %v (p99 %v, %q), want 699 (p99 180, below 900)", r.SustainablePerS, r.SustainableP99Ms, r.SustainableNote)
	}
	r = Result{RecordsPerS: 1000, Probes: []Probe{{TargetPerS: 500}, {TargetPerS: 250}}}
	setSustainable(&r)
	if r.SustainablePerS != 0 || !strings.Contains(r.SustainableNote, "below 250") {
		t.Errorf("no pass: sustainable %v, %q", r.SustainablePerS, r.SustainableNote)
	}
	r = Result{RecordsPerS: 1000, Probes: []Probe{{TargetPerS: 500, AchievedPerS: 500, Passed: true}, {TargetPerS: 900, AchievedPerS: 900, Passed: true}}}
	setSustainable(&r)
	if r.SustainablePerS != 900 || !strings.HasPrefix(r.SustainableNote, "at least") {
		t.Errorf("all passed: sustainable %v, %q", r.SustainablePerS, r.SustainableNote)
	}
}

func TestSmokeSpread(t *testing.T) {
	s := spreadOf([]float64{5, 1, 4, 2, 3})
	if s.N != 5 || s.Median != 3 || s.Min != 1 || s.Max != 5 || s.Q1 != 2 || s.Q3 != 4 {
		t.Errorf("spread %+v", s)
	}
	s = spreadOf([]float64{1, 2, 3, 4})
	if s.Median != 2.5 || s.Q1 != 1.75 || s.Q3 != 3.25 {
		t.Errorf("even spread %+v", s)
	}
	if s := spreadOf([]float64{7}); s.Median != 7 || s.Q1 != 7 || s.Q3 != 7 {
		t.Errorf("one sample %+v", s)
	}
}

// TestSmokeOutputCheck feeds the per-key check the mistakes a system can make.
func TestSmokeOutputCheck(t *testing.T) {
	x := newExpectation()
	for _, kv := range [][2]string{{"a", "1"}, {"b", "1"}, {"a", "2"}, {"a", "3"}, {"b", "2"}} {
		x.add([]byte(kv[0]), []byte(kv[1]))
	}
	run := func(outs ...string) (string, error) {
		o := x.newCheck()
		for _, kv := range outs {
			k, v, _ := strings.Cut(kv, "=")
			o.add([]byte(k), []byte(v))
		}
		return o.verdict()
	}
	for _, tc := range []struct {
		name string
		outs []string
		want string // verdict, or "wrong"
	}{
		{"all, interleaved across keys", []string{"b=1", "a=1", "a=2", "b=2", "a=3"}, "exact"},
		{"a prefix per key", []string{"a=1", "b=1", "a=2"}, "prefix"},
		{"nothing yet", nil, "prefix"},
		{"a loss", []string{"a=1", "a=3"}, "wrong"},
		{"a duplicate", []string{"a=1", "a=1"}, "wrong"},
		{"out of order within a key", []string{"a=2", "a=1"}, "wrong"},
		{"a wrong value", []string{"b=7"}, "wrong"},
		{"an unknown key", []string{"c=1"}, "wrong"},
		{"one too many", []string{"b=1", "b=2", "b=3"}, "wrong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := run(tc.outs...)
			if err != nil {
				got = "wrong"
			}
			if got != tc.want {
				t.Errorf("verdict %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestSmokeStageDelta(t *testing.T) {
	a := map[string]processor.StageMetrics{"s": {Records: 10, Commits: 1, CommitTime: time.Second}}
	b := map[string]processor.StageMetrics{"s": {Records: 110, Commits: 3, CommitTime: 3 * time.Second}}
	d := stageDelta(a, b)["s"]
	if d["records"] != 100 || d["commits"] != 2 || d["commit_time_s"] != 2 {
		t.Errorf("delta %v", d)
	}
	if got := describeStages(stageDelta(a, b)); !strings.Contains(got, "50 records/commit") || !strings.Contains(got, "ending 1000.0 ms") {
		t.Errorf("describeStages: %s", got)
	}
	for in, want := range map[string]string{"CommitTime": "commit_time", "Records": "records", "RestoredRecords": "restored_records", "NullKeys": "null_keys"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}
