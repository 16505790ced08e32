package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// The crash test's timer and input: the timer releases every 150 ms, three
// cycles of the 50 ms commit interval; the steady input comes in bursts of
// 1 s separated by lulls of 0.4 s, so that the batch of the last items of
// a burst is released, more often than not, by a cycle that polls no
// record.
const (
	crashInterval   = 150 * time.Millisecond
	crashCommit     = 50 * time.Millisecond
	crashPartitions = 4
	burst, period   = 1000 * time.Millisecond, 1400 * time.Millisecond
	// lullAfter: a batch released this long after the latest input
	// record was acknowledged was, most likely, released by a cycle that
	// polled no record: a cycle that polls a record ends at most a commit
	// interval after it, and then fires the timers. An instance catching
	// up after a restart may still poll older records later.
	lullAfter = crashCommit + 50*time.Millisecond
)

// TestCrashBatcher runs the batcher binary (items buffered in a store,
// released in batches by a wall-clock timer, stream.Every with
// stream.WallClock) as subprocesses against a broker that outlives them
// (the real one when KAFKA_BROKERS is set, kfake otherwise), kills them with
// SIGKILL at random moments (each kill aimed at an open transaction of the
// victim; sometimes also deleting its state directory; with 2 instances one
// victim stays down past the session timeout) while a backlog and then a
// bursty stream of uniquely numbered items are processed, restarts them,
// and checks what a read_committed reader sees: every item of the input
// exactly once, with its payload, in a batch of its own partition; each
// batch's summary exactly once, counting exactly the items that carry the
// batch; and every partition's batches numbered 1, 2, ..., n without a gap.
//
// One cycle in three (the timer's interval is three commit intervals)
// releases a batch: its transaction holds the batch's items, the buffer's
// deletions, the batch counter and the summary; a restarted task must
// release exactly the items the killed one had buffered and not released in
// a committed transaction. The records of a cycle only write the buffer,
// so the broker sees a transaction open only from the cycle's first produce
// (its changelog records and the batch, at the end of the cycle) to its
// EndTxn, a few milliseconds of each cycle; the test runs with a 50 ms
// commit interval so that a kill's 500 ms aim spans many of them. The kills
// that find one open land while the cycle's state changes, and its batch
// if it has one, are on their way to the broker. The lulls of the input
// make timers fire in cycles that poll no record (the transaction then
// holds only the timer's effects); the test counts the batches released in
// lulls and fails if there is none, or if no kill landed mid-transaction.
// It has one variant per number of instances (1, 2). The seed is printed;
// SLUICE_CRASH_SEED=N reruns it.
func TestCrashBatcher(t *testing.T) {
	crashtest.Run(t, "batcher", []int{1, 2}, crashBatcher)
}

func crashBatcher(t *testing.T, bin string, instances int, seed uint64) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash-batcher")
	input, output, batches := app+"-items", app+"-batched", app+"-batches"
	crashtest.CreateTopics(t, brokers, crashPartitions, nil, input, output, batches)

	gen := &itemGen{seq: make([]int, crashPartitions)}
	toInput := crashtest.NewProducer(t, brokers, input)
	produce := func(recs []*kgo.Record) {
		toInput(recs)
		gen.acked(time.Now())
	}

	h := crashtest.New(t, bin, brokers, app)
	// A cycle's transaction is open only from its end-of-cycle produce to
	// EndTxn, a few milliseconds: aim longer than the default so that most
	// kills land inside one.
	h.Aim = 2 * time.Second
	h.Args = []string{"-input", input, "-output", output, "-batches", batches,
		"-interval", crashInterval.String(), "-commit-interval", crashCommit.String()}
	defer h.KillAll()

	start := time.Now()
	produce(gen.next(2500))
	names := h.StartAll(instances)
	// Bursts of 10 items per partition every 50 ms, and lulls.
	stopInput := crashtest.SteadyInput(50*time.Millisecond, func() {
		if time.Since(start)%period < burst {
			produce(gen.next(10))
		}
	})
	defer stopInput()

	c := h.Chaos(rng, names, 12)
	stopInput()
	want := gen.items()

	// Every instance runs again; a buffered item is released within a
	// timer interval unless a rebalance holds its task (up to the 10 s
	// rebalance timeout of the test profile).
	took := waitReleased(t, h, output, len(want), 20*time.Second, 3*time.Minute)
	h.StopAll()
	items := testbroker.ReadCommitted(t, brokers, output)
	sums := testbroker.ReadCommitted(t, brokers, batches)
	lulls := gen.lullBatches(sums)
	t.Logf("%d instance(s): %v; %d items, %d batches (%d released in lulls of the input); the last items released %v after the kills ended; %v in all",
		instances, c, len(want), len(sums), lulls, took.Round(time.Millisecond), time.Since(start).Round(time.Second))
	checkBatches(t, items, sums, want, seed)
	c.CheckMidTxn(t, seed)
	if lulls == 0 {
		t.Errorf("no batch was released in a lull of the input: the test proved nothing about timers in cycles without records (seed %d)", seed)
	}
}

// itemGen makes the crash test's input: per partition p, items "p-000001",
// "p-000002", ... with payload "payload-<id>", produced to p.
type itemGen struct {
	mu   sync.Mutex
	seq  []int
	acks []time.Time // when each produce was acknowledged, in order
}

// next returns the next n items of every partition.
func (g *itemGen) next(n int) []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	var recs []*kgo.Record
	for p := range g.seq {
		for range n {
			g.seq[p]++
			id := itemID(p, g.seq[p])
			recs = append(recs, &kgo.Record{Partition: int32(p), Key: []byte(id), Value: []byte("payload-" + id)})
		}
	}
	return recs
}

func itemID(p, n int) string { return fmt.Sprintf("%d-%06d", p, n) }

func (g *itemGen) acked(at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.acks = append(g.acks, at)
}

// items returns the payload of every item generated: the expected output.
func (g *itemGen) items() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	want := map[string]string{}
	for p, n := range g.seq {
		for i := 1; i <= n; i++ {
			id := itemID(p, i)
			want[id] = "payload-" + id
		}
	}
	return want
}

// lullBatches counts the summaries whose timestamp (the time the timer
// fired) is more than lullAfter after the latest acknowledgement of input
// before it: batches released, most likely, by cycles that polled no
// record.
func (g *itemGen) lullBatches(sums []*kgo.Record) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, s := range sums {
		i, _ := slices.BinarySearchFunc(g.acks, s.Timestamp, func(a, t time.Time) int { return a.Compare(t) })
		if i > 0 && s.Timestamp.Sub(g.acks[i-1]) > lullAfter {
			n++
		}
	}
	return n
}

// waitReleased reads topic with read_committed until it has seen n distinct
// keys, or no new key for quiet, and returns how long that took. Running
// out of time or of live instances fails the test; a quiet spell does not
// (checkBatches then reports what is missing). Records that repeat a key do
// not count (checkBatches reports them).
func waitReleased(t *testing.T, h *crashtest.Harness, topic string, n int, quiet, timeout time.Duration) time.Duration {
	t.Helper()
	began, last := time.Now(), time.Now()
	cl := testbroker.NewClient(t, h.Brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	seen := map[string]bool{}
	for len(seen) < n {
		alive := h.Alive()
		if !alive || time.Since(began) > timeout {
			t.Fatalf("%d of %d items released (alive: %v, after up to %v)", len(seen), n, alive, timeout)
		}
		if time.Since(last) > quiet {
			t.Logf("%d of %d items released, and nothing new for %v: checking", len(seen), n, quiet)
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			if !seen[string(r.Key)] {
				seen[string(r.Key)] = true
				last = time.Now()
			}
		})
		cancel()
	}
	return time.Since(began)
}

// checkBatches asserts that items and sums (the outputs, read_committed)
// hold every item of want exactly once, with its payload, in a batch of the
// item's partition; that every batch's summary is there once and counts
// exactly the items that carry the batch; and that every partition's
// batches are numbered 1..n.
func checkBatches(t *testing.T, items, sums []*kgo.Record, want map[string]string, seed uint64) {
	t.Helper()
	shown := 0
	show := func(format string, a ...any) {
		if shown < 10 {
			t.Errorf(format, a...)
		}
		shown++
	}
	got := map[string]int{}
	inBatch := map[string]int{}
	bad := 0
	for _, r := range items {
		id := string(r.Key)
		it, err := ParseItem(string(r.Value))
		if err != nil {
			bad++
			show("item %s=%q (partition %d, offset %d): %v", id, r.Value, r.Partition, r.Offset, err)
			continue
		}
		got[id]++
		inBatch[it.Batch]++
		p, _, _ := strings.Cut(id, "-")
		bp, _, _ := strings.Cut(it.Batch, "-")
		switch {
		case want[id] == "" && got[id] == 1:
			show("item %s (partition %d, offset %d) is not one of the input's", id, r.Partition, r.Offset)
		case got[id] == 2:
			show("item %s released more than once (again at partition %d, offset %d, in batch %s)", id, r.Partition, r.Offset, it.Batch)
		case it.Payload != want[id] || bp != p:
			bad++
			show("item %s=%q: want payload %q in a batch of partition %s", id, r.Value, want[id], p)
		}
	}
	missing, twice, copies, extra := 0, 0, 0, 0
	for id := range want {
		if got[id] == 0 {
			missing++
			show("item %s is missing", id)
		}
	}
	for id, n := range got {
		switch {
		case want[id] == "":
			extra += n
		case n > 1:
			twice++
			copies += n - 1
		}
	}

	// Summaries: once each, counting their items; numbered 1..n per
	// partition.
	summed := map[string]int{}
	numbers := map[string][]int{}
	badSums := 0
	for _, s := range sums {
		b := string(s.Key)
		summed[b]++
		count, err := strconv.Atoi(string(s.Value))
		p, ns, ok := strings.Cut(b, "-")
		n, nerr := strconv.Atoi(ns)
		switch {
		case err != nil || !ok || nerr != nil:
			badSums++
			show("summary %s=%q (partition %d, offset %d) does not parse", b, s.Value, s.Partition, s.Offset)
			continue
		case summed[b] > 1:
			badSums++
			show("batch %s summarized more than once (again at partition %d, offset %d)", b, s.Partition, s.Offset)
			continue
		case count != inBatch[b]:
			badSums++
			show("batch %s: its summary counts %d items, the output holds %d", b, count, inBatch[b])
		}
		numbers[p] = append(numbers[p], n)
	}
	for b, n := range inBatch {
		if summed[b] == 0 {
			badSums++
			show("batch %s released %d items and has no summary", b, n)
		}
	}
	for p, ns := range numbers {
		slices.Sort(ns)
		for i, n := range ns {
			if n != i+1 {
				badSums++
				show("partition %s: batches numbered %v..., want 1, 2, ... without a gap", p, ns[max(0, i-2):min(len(ns), i+3)])
				break
			}
		}
	}
	if missing+twice+extra+bad+badSums > 0 {
		t.Fatalf("exactly-once violated: of %d items, %d missing, %d released more than once (%d extra copies); %d records not items of the input, %d wrong or unparsable; %d batch summaries wrong (missing, repeated, miscounted or misnumbered) of %d; %d items in all (seed %d)",
			len(want), missing, twice, copies, extra, bad, badSums, len(sums), len(items), seed)
	}
}
