package processor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/internal/topology"
)

// The membership simulation's checks: draining (progress within a bound,
// with a dump of goroutines and state when it stalls), the read_committed
// checks of every effect, the Pebble state of every incarnation, and the
// restarts.

// progress is what a read_committed reader saw so far.
type simProgress struct {
	released map[string]int // id -> times released
	maxCount map[string]int // word -> highest count
}

// drain waits until every produced id was released and every word's count
// is final, as a read_committed reader sees them, within timeout. It fails
// the test with a dump of goroutines and state if that does not happen.
func (s *sim) drain(timeout time.Duration) {
	s.t.Helper()
	s.producing.Wait()
	total := s.produced()
	want := s.wantCounts()
	cl := testbroker.NewClient(s.t, s.brokers,
		kgo.ConsumeTopics(s.tp.released, s.tp.counts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	pr := simProgress{released: map[string]int{}, maxCount: map[string]int{}}
	counted := 0
	deadline := time.Now().Add(timeout)
	// Done when every id was released and as many counts were emitted as
	// ids were produced (a count per processed record; whether they are
	// right is check's business).
	done := func() bool { return len(pr.released) >= total && counted >= total }
	for !done() {
		if time.Now().After(deadline) {
			s.dump(fmt.Sprintf("no progress: after %v of draining, %d of %d ids released, %d of %d counts emitted (%s)",
				timeout, len(pr.released), total, counted, total, countsGap(pr.maxCount, want)))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case s.tp.released:
				pr.released[string(r.Key)]++
			case s.tp.counts:
				counted++
				n, _ := strconv.Atoi(string(r.Value))
				pr.maxCount[string(r.Key)] = max(pr.maxCount[string(r.Key)], n)
			}
		})
	}
	s.note("drained: %d ids released, every count final", total)
}

func countsGap(have, want map[string]int) string {
	var short []string
	for w, n := range want {
		if have[w] < n {
			short = append(short, fmt.Sprintf("%s %d/%d", w, have[w], n))
		}
	}
	sort.Strings(short)
	if len(short) == 0 {
		return "all final"
	}
	return "short: " + strings.Join(short, ", ")
}

func (s *sim) wantCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]int{}
	for _, w := range s.mu.words {
		want[w]++
	}
	return want
}

// stopAll stops every incarnation still running, cleanly, and waits for
// every Run (killed ones too) to return within timeout.
func (s *sim) stopAll(timeout time.Duration) {
	s.t.Helper()
	for _, in := range s.instances() {
		if !in.killed.Load() && !in.stopped.Load() {
			in.leave()
		}
	}
	deadline := time.After(timeout)
	for _, in := range s.instances() {
		select {
		case <-in.done:
		case <-deadline:
			s.dump(fmt.Sprintf("%s: Run did not return within %v of being stopped", in.name, timeout))
			return
		}
	}
}

// dump fails the test with a description of the state and every
// goroutine's stack (also written to a file).
func (s *sim) dump(why string) {
	s.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nstate:\n", why)
	for _, in := range s.instances() {
		st := "running"
		switch {
		case in.killed.Load():
			st = "killed"
		case in.stopped.Load():
			st = "stopped"
		case in.paused.Load():
			st = "paused"
		}
		select {
		case <-in.done:
			st += fmt.Sprintf(", Run returned %v", in.err)
		default:
		}
		in.net.mu.Lock()
		ns := in.net.stats
		in.net.mu.Unlock()
		fmt.Fprintf(&b, "  %s (%s): %s; net %+v\n", in.name, in.id, st, ns)
		for stage, m := range in.metrics() {
			fmt.Fprintf(&b, "    %s: %+v\n", stage, m)
		}
	}
	for _, g := range []string{s.app + "-" + simIngest, s.app + "-" + simTally} {
		if gi := s.c.GroupInfo(g); gi != nil {
			fmt.Fprintf(&b, "  group %s: %+v\n", g, *gi)
		}
	}
	var stacks strings.Builder
	pprof.Lookup("goroutine").WriteTo(&stacks, 2)
	path := filepath.Join(os.TempDir(), fmt.Sprintf("sluice-sim-%d-stacks.txt", s.seed))
	if err := os.WriteFile(path, []byte(stacks.String()), 0o644); err == nil {
		fmt.Fprintf(&b, "\ngoroutine stacks written to %s\n", path)
	}
	st := stacks.String()
	if len(st) > 200<<10 {
		st = st[:200<<10] + "\n... (truncated; see the file)"
	}
	s.t.Log("goroutines:\n" + st)
	s.fail(b.String())
}

// fail reports a violation with the seed, the schedule and its events.
func (s *sim) fail(msg string) {
	s.t.Helper()
	replay := fmt.Sprintf("go test ./processor -run 'TestMembershipSim/random' -sim.seed=%d", s.seed)
	if strings.Contains(s.t.Name(), "/directed/") {
		replay = fmt.Sprintf("go test ./processor -run '%s'", s.t.Name())
	}
	s.t.Fatalf("%s\n\nseed %d (replay: %s)\nevents:\n%s", msg, s.seed, replay, s.eventLog())
}

// check reads every output with read_committed (all instances stopped) and
// checks exactly-once effects; then the restarts.
func (s *sim) check() {
	s.t.Helper()
	// Violations by kind (the text before the first ':'), at most 6
	// lines of each kind, then how many more.
	var errs []string
	kinds := map[string]int{}
	total := 0
	bad := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		kind, _, _ := strings.Cut(msg, ":")
		total++
		if kinds[kind]++; kinds[kind] <= 6 {
			errs = append(errs, msg)
		}
	}
	s.mu.Lock()
	words := slices.Clone(s.mu.words)
	s.mu.Unlock()
	want := s.wantCounts()

	// Counts: every word reads 1, 2, ..., n.
	last := map[string]int{}
	for _, r := range testbroker.ReadCommitted(s.t, s.brokers, s.tp.counts) {
		w := string(r.Key)
		n, _ := strconv.Atoi(string(r.Value))
		if n != last[w]+1 {
			bad("counts: word %s reads %d after %d (partition %d offset %d): a count duplicated or lost", w, n, last[w], r.Partition, r.Offset)
		}
		last[w] = max(last[w], n)
	}
	for w, n := range want {
		if last[w] != n {
			bad("counts: word %s ends at %d, want %d", w, last[w], n)
		}
	}

	// Released: every id once, in a batch whose summary counts it.
	released := map[string][]string{} // id -> batches
	inBatch := map[string]int{}
	for _, r := range testbroker.ReadCommitted(s.t, s.brokers, s.tp.released) {
		released[string(r.Key)] = append(released[string(r.Key)], string(r.Value))
		inBatch[string(r.Value)]++
	}
	for i, w := range words {
		id := simID(i)
		switch bs := released[id]; {
		case len(bs) == 0:
			bad("released: %s (word %s) never released", id, w)
		case len(bs) > 1:
			bad("released: %s released %d times, in batches %v", id, len(bs), bs)
		}
	}
	// Batches: per partition 1..n, each once, its size the items it released.
	seqs := map[string][]int{}
	for _, r := range testbroker.ReadCommitted(s.t, s.brokers, s.tp.batches) {
		batch := string(r.Key)
		p, n, _ := strings.Cut(batch, "-")
		k, _ := strconv.Atoi(n)
		seqs[p] = append(seqs[p], k)
		if size, _ := strconv.Atoi(string(r.Value)); size != inBatch[batch] {
			bad("batches: batch %s says %d items, %d were released with it", batch, size, inBatch[batch])
		}
	}
	for p, ks := range seqs {
		slices.Sort(ks) // the batches topic is partitioned by batch, not by task
		for i, k := range ks {
			if k != i+1 {
				bad("batches: partition %s: batch numbers %v, want 1..%d once each", p, ks, len(ks))
				break
			}
		}
	}

	// Ticks: per partition, exactly those the committed repartition topic
	// makes (stream time = the highest timestamp so far; a tick at each
	// crossing of a multiple of s.tick, not at the first record).
	wantTicks := map[string][]int64{}
	from := map[int32]int64{}
	for _, r := range testbroker.ReadCommitted(s.t, s.brokers, s.tp.repartition) {
		ts := r.Timestamp.UnixMilli()
		prev, seen := from[r.Partition]
		if !seen {
			from[r.Partition] = ts
			continue
		}
		if ts <= prev {
			continue
		}
		from[r.Partition] = ts
		if ts*1e6/int64(s.tick) > prev*1e6/int64(s.tick) { // timestamps are positive
			p := strconv.Itoa(int(r.Partition))
			wantTicks[p] = append(wantTicks[p], ts)
		}
	}
	gotTicks := map[string][]int64{}
	for _, r := range testbroker.ReadCommitted(s.t, s.brokers, s.tp.ticks) {
		v, _ := strconv.ParseInt(string(r.Value), 10, 64)
		gotTicks[string(r.Key)] = append(gotTicks[string(r.Key)], v)
	}
	for p := range s.partitions {
		k := strconv.Itoa(int(p))
		if fmt.Sprint(gotTicks[k]) != fmt.Sprint(wantTicks[k]) {
			bad("ticks: partition %s fired at %v, the committed input makes %v", k, rel(gotTicks[k], s.base), rel(wantTicks[k], s.base))
		}
	}

	s.checkStateDirs(bad)

	// Restarts only where a fault explains them.
	for _, in := range s.instances() {
		if in.killed.Load() {
			continue
		}
		if in.err != nil {
			bad("%s: Run returned %v", in.name, in.err)
		}
		if in.faulted.Load() {
			continue
		}
		for stage, m := range in.metrics() {
			if m.Restarts > 0 {
				bad("%s: stage %s restarted %d times, but no fault was aimed at this instance (only joins and leaves; metrics %+v)", in.name, stage, m.Restarts, m)
			}
		}
	}
	for _, in := range s.instances() {
		s.t.Logf("%s: faulted=%v killed=%v metrics %v", in.name, in.faulted.Load(), in.killed.Load(), in.metrics())
	}
	s.mu.Lock()
	for _, f := range s.mu.faults {
		s.t.Logf("broker fault %s: hit %d times", f.what, f.h.Hits())
	}
	s.mu.Unlock()
	if total > 0 {
		var more []string
		for kind, n := range kinds {
			if n > 6 {
				more = append(more, fmt.Sprintf("%s: %d more", kind, n-6))
			}
		}
		sort.Strings(more)
		errs = append(errs, more...)
		s.fail(fmt.Sprintf("%d exactly-once or restart violations over %d ids:\n  %s", total, len(words), strings.Join(errs, "\n  ")))
	}
	s.t.Logf("seed %d: %d ids, %d words, every effect once; events:\n%s", s.seed, len(words), len(want), s.eventLog())
}

// rel shows stream times as seconds after base.
func rel(ms []int64, base time.Time) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%.2f", float64(m-base.UnixMilli())/1000)
	}
	return out
}

// checkStateDirs checks, in the state directory of every incarnation (all
// stopped), the invariant "Pebble state == the committed changelog replayed
// up to the checkpoint" for every task and store of the tally stage: a
// write of a transaction that did not commit, or a task kept stale, breaks
// it.
func (s *sim) checkStateDirs(bad func(string, ...any)) {
	s.t.Helper()
	var stores []string
	for _, st := range topology.Of(s.topology(newLoopGate())).Stages {
		if st.Name == simTally {
			for _, ss := range st.Stores {
				stores = append(stores, ss.Name)
			}
		}
	}
	// store -> partition -> committed records in offset order
	logs := map[string]map[int32][]*kgo.Record{}
	for _, store := range stores {
		logs[store] = map[int32][]*kgo.Record{}
		for _, r := range testbroker.ReadCommitted(s.t, s.brokers, topology.ChangelogTopic(s.app, store)) {
			logs[store][r.Partition] = append(logs[store][r.Partition], r)
		}
	}
	seen := map[string]bool{}
	for _, in := range s.instances() {
		if seen[in.dir] {
			continue
		}
		seen[in.dir] = true
		db, err := state.Open(filepath.Join(in.dir, s.app))
		if err != nil {
			bad("state: %s: opening %s: %v", in.name, in.dir, err)
			continue
		}
		for p := range s.partitions {
			cp, found, err := db.Checkpoint(state.TaskID{Stage: simTally, Partition: p})
			if err != nil {
				bad("state: %s: task %d: reading the checkpoint: %v", in.name, p, err)
				continue
			}
			for _, store := range stores {
				local := map[string]string{}
				txn := db.NewTxn()
				err := txn.Store(store, p).Scan(nil, nil, func(k, v []byte) error {
					local[string(k)] = string(v)
					return nil
				})
				txn.Discard()
				if err != nil {
					bad("state: %s: task %d: scanning %s: %v", in.name, p, store, err)
					continue
				}
				next := cp.Stores[store].Next
				replay := map[string]string{}
				if found {
					for _, r := range logs[store][p] {
						if r.Offset >= next {
							break
						}
						if r.Value == nil {
							delete(replay, string(r.Key))
						} else {
							replay[string(r.Key)] = string(r.Value)
						}
					}
				}
				if fmt.Sprint(local) != fmt.Sprint(replay) {
					bad("state: %s (dir %s): task %d store %s: Pebble holds %d keys that differ from the committed changelog replayed to the checkpoint %d (%d keys): %s",
						in.name, filepath.Base(in.dir), p, store, len(local), next, len(replay), mapDiff(local, replay))
				}
			}
		}
		if err := db.Close(); err != nil {
			bad("state: %s: closing: %v", in.name, err)
		}
	}
}

// mapDiff describes up to 3 keys where local and replay differ.
func mapDiff(local, replay map[string]string) string {
	var out []string
	for k, v := range local {
		if rv, ok := replay[k]; !ok || rv != v {
			out = append(out, fmt.Sprintf("%q: local %q, changelog %q", k, v, rv))
		}
	}
	for k, rv := range replay {
		if _, ok := local[k]; !ok {
			out = append(out, fmt.Sprintf("%q: local none, changelog %q", k, rv))
		}
	}
	sort.Strings(out)
	if len(out) > 3 {
		out = append(out[:3], fmt.Sprintf("and %d more", len(out)-3))
	}
	return strings.Join(out, "; ")
}
