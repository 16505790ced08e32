package crashtest

import (
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// maxShown bounds the differences a check reports one by one.
const maxShown = 10

// CheckExactlyOnce asserts that got (a crash test's outputs, read
// read_committed, one string each, e.g. "key value") holds every output of
// want exactly as many times as want counts it, and nothing else. It
// reports the first differences with t.Errorf (explain, when not nil, adds
// to the report of an output that want does not hold) and fails the test
// with the totals and the seed.
func CheckExactlyOnce(t testing.TB, got []string, want map[string]int, seed uint64, explain func(out string) string) {
	t.Helper()
	seen := map[string]int{}
	shown := 0
	show := func(format string, a ...any) {
		if shown < maxShown {
			t.Errorf(format, a...)
		}
		shown++
	}
	for _, k := range got {
		seen[k]++
		switch {
		case want[k] == 0 && seen[k] == 1:
			why := ""
			if explain != nil {
				why = "; " + explain(k)
			}
			show("output %q is not one the input makes%s", k, why)
		case want[k] > 0 && seen[k] == want[k]+1:
			show("output %q emitted more than once", k)
		}
	}
	missing, again, extra, unknown := 0, 0, 0, 0
	for k, n := range want {
		if seen[k] < n {
			missing += n - seen[k]
			show("output %q is missing", k)
		}
	}
	for k, n := range seen {
		switch {
		case want[k] == 0:
			unknown += n
		case n > want[k]:
			again++
			extra += n - want[k]
		}
	}
	if missing+extra+unknown > 0 {
		t.Fatalf("exactly-once violated: of %d expected outputs, %d missing, %d emitted more than once (%d extra copies), %d not made by the input; %d read in all (seed %d)",
			len(want), missing, again, extra, unknown, len(got), seed)
	}
}

// CheckRunningCounts asserts that recs (the output of a running count, read
// read_committed: key = what is counted, value = its count as decimal text)
// hold for every key of want exactly the counts 1, 2, ..., want[key], in
// order, and no other key: no update lost, none applied twice.
func CheckRunningCounts(t testing.TB, recs []*kgo.Record, want map[string]int) {
	t.Helper()
	last := map[string]int{}
	dups, gaps := 0, 0
	for _, r := range recs {
		k := string(r.Key)
		v, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("output %q=%q is not a count", r.Key, r.Value)
		}
		switch {
		case v <= last[k]:
			dups++
		case v > last[k]+1:
			gaps++
		}
		if dups+gaps > 0 && dups+gaps <= maxShown && v != last[k]+1 {
			t.Errorf("key %s: count %d follows %d (partition %d, offset %d)", k, v, last[k], r.Partition, r.Offset)
		}
		last[k] = v
	}
	wrong := 0
	for k, n := range want {
		if last[k] != n {
			if wrong < maxShown {
				t.Errorf("key %s: final count %d, want %d", k, last[k], n)
			}
			wrong++
		}
	}
	extra := 0
	for k := range last {
		if _, ok := want[k]; !ok {
			extra++
		}
	}
	if dups+gaps+wrong+extra > 0 {
		t.Fatalf("exactly-once violated: %d duplicates, %d gaps, %d keys with a wrong final count, %d keys not in the input, in %d records", dups, gaps, wrong, extra, len(recs))
	}
}
