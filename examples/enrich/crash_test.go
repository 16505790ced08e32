package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestCrashEnrich runs the enrich binary (a join with a table in one stage,
// a repartition, tumbling windows in the next) as subprocesses against a
// broker that outlives them (the real one when KAFKA_BROKERS is set, kfake
// otherwise) and kills them with SIGKILL at random moments (each kill aimed
// at an open transaction of the victim; sometimes also deleting its state
// directory) while a backlog and then a steady stream of page views are
// processed, restarts them, and checks the windowed results a read_committed
// reader sees against those computed from the generated input without
// crashes: for every country and minute exactly the counts 1, 2, ..., n (no
// record twice, none missing), n being the views of that country's users
// with timestamps in that minute. Page views carry event timestamps chosen
// by the test, spread over a dozen windows and out of order by up to 30 s;
// the grace (1 h) covers them all, so no view is late whatever the order in
// which the repartition delivers them. Views of unknown users are dropped by
// the join. It has one variant per number of instances (1, 2). The seed is
// printed; SLUICE_CRASH_SEED=N reruns it.
func TestCrashEnrich(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := crashtest.Seed(t)
	bin := crashtest.Build(t, "enrich")
	for _, n := range []int{1, 2} {
		name := fmt.Sprintf("%d instances", n)
		if n == 1 {
			name = "1 instance"
		}
		t.Run(name, func(t *testing.T) {
			crashEnrich(t, bin, n, seed+uint64(n))
		})
	}
}

func crashEnrich(t *testing.T, bin string, instances int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash-enrich")
	views, users, output := app+"-views", app+"-users", app+"-counts"
	compact := "compact"
	// The views carry event timestamps from 2024, and the outputs inherit
	// them: with the broker's default time retention (7 days) Kafka deletes
	// such records within minutes. Keep them.
	forever := "-1"
	testbroker.CreateTopic(t, brokers, users, 4, map[string]*string{"cleanup.policy": &compact})
	testbroker.CreateTopic(t, brokers, views, 4, map[string]*string{"retention.ms": &forever})
	testbroker.CreateTopic(t, brokers, output, 4, map[string]*string{"retention.ms": &forever})

	gen := newViewGen(rng.Uint64(), 300, 8)
	h := newHarness(t, bin, brokers, app, views, users, output)
	h.args = []string{"-grace", "1h"}
	defer h.KillAll()
	names := make([]string, instances)
	for i := range names {
		names[i] = fmt.Sprintf("i%d", i+1)
		h.Start(names[i])
	}
	// No wait for the table: its records are timestamped before every
	// view, and each task processes its records in timestamp order across
	// the views and users partitions (waiting for a partition the broker
	// holds unfetched records for), so no view is processed before its
	// user, whatever the fetch order.

	// The users, then at once a backlog of views, then a steady stream of
	// views for as long as the kills go on, so that every kill lands while
	// the instances have work in flight.
	crashtest.Produce(t, brokers, users, gen.userRecords())
	crashtest.Produce(t, brokers, views, gen.next(10000))
	stopInput := h.steadyInput(gen, 100, 50*time.Millisecond)

	const kills = 10
	c := h.Chaos(rng, names, kills)
	midTxn, wiped, outages := c.MidTxn, c.Wiped, c.Outages
	stopInput()
	want, total := gen.counts()
	seen := h.waitCount(total, 3*time.Minute)
	for _, n := range names {
		h.Stop(n)
	}
	t.Logf("%d instance(s): %d kills, %d landed mid-transaction, %d state directories wiped, %d outages past the session timeout; %d page views (%d of unknown users), %d windows of %d countries",
		instances, kills, midTxn, wiped, outages, gen.views, gen.unknown, len(want), gen.countries)
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the kills", seen, total)
	}
	recs := testbroker.ReadCommitted(t, brokers, output)
	checkCounts(t, recs, want)
	if midTxn == 0 {
		t.Errorf("no kill landed while a transaction was open: the test proved nothing (seed %d)", seed)
	}
}

// harness runs enrich instances on the topics views, users and output.
type harness struct {
	*crashtest.Harness
	views, users, output string
	args                 []string // extra flags for every instance
}

func newHarness(t *testing.T, bin string, brokers []string, app, views, users, output string) *harness {
	h := &harness{Harness: crashtest.New(t, bin, brokers, app), views: views, users: users, output: output}
	h.Flags = func(name string) []string {
		return append([]string{
			"-brokers", strings.Join(brokers, ","),
			"-app", app, "-views", views, "-users", users, "-output", output,
			"-state-dir", h.StateDir(name), "-instance-id", name,
			"-commit-interval", "100ms", "-v"}, h.args...)
	}
	return h
}

// steadyInput produces n page views every interval until the returned
// function is called; it returns once the producer stopped.
func (h *harness) steadyInput(gen *viewGen, n int, interval time.Duration) (stop func()) {
	return crashtest.SteadyInput(interval, func() { crashtest.Produce(h.T, h.Brokers, h.views, gen.next(n)) })
}

// waitCount consumes the output with read_committed from its start until it
// has seen n records, timeout passed or every instance has exited, and
// returns how many records it saw.
func (h *harness) waitCount(n int, timeout time.Duration) int {
	return h.WaitCount(h.output, n, timeout)
}

// viewBase is the event time of the first generated page view.
var viewBase = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// viewGen makes users with countries and page views of them (and of a few
// unknown users), with event timestamps 20 ms apart plus up to 30 s of
// jitter, and counts the views per country and minute, as the topology
// should.
type viewGen struct {
	rng       *rand.Rand
	users     []string
	country   map[string]string
	countries int
	mu        sync.Mutex
	want      map[string]int
	total     int // joined views: one output record each
	views     int
	unknown   int
}

func newViewGen(seed uint64, users, countries int) *viewGen {
	g := &viewGen{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), country: map[string]string{},
		countries: countries, want: map[string]int{}}
	for i := 0; i < users; i++ {
		u := fmt.Sprintf("user-%d", i)
		g.users = append(g.users, u)
		g.country[u] = fmt.Sprintf("c%d", g.rng.IntN(countries))
	}
	return g
}

func (g *viewGen) userRecords() []*kgo.Record {
	recs := make([]*kgo.Record, len(g.users))
	for i, u := range g.users {
		recs[i] = &kgo.Record{Key: []byte(u), Value: []byte(g.country[u]), Timestamp: viewBase.Add(-time.Hour)}
	}
	return recs
}

func (g *viewGen) next(n int) []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		u := g.users[g.rng.IntN(len(g.users))]
		if g.rng.IntN(20) == 0 {
			u = fmt.Sprintf("stranger-%d", g.rng.IntN(50))
		}
		ts := viewBase.Add(time.Duration(g.views)*20*time.Millisecond + time.Duration(g.rng.IntN(30_000))*time.Millisecond)
		recs[i] = &kgo.Record{Key: []byte(u), Value: []byte(fmt.Sprintf("/page/%d", g.rng.IntN(100))), Timestamp: ts}
		g.views++
		c, ok := g.country[u]
		if !ok {
			g.unknown++
			continue
		}
		g.want[WindowKey(c, ts.Truncate(time.Minute))]++
		g.total++
	}
	return recs
}

func (g *viewGen) counts() (map[string]int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.want, g.total
}

// checkCounts asserts that for every window key the output values are
// exactly 1, 2, ..., n, and n is the window's count in the input.
func checkCounts(t testing.TB, recs []*kgo.Record, want map[string]int) {
	t.Helper()
	last := map[string]int{}
	dups, gaps := 0, 0
	for _, r := range recs {
		w := string(r.Key)
		v, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("output %q=%q is not a count", r.Key, r.Value)
		}
		switch {
		case v <= last[w]:
			dups++
		case v > last[w]+1:
			gaps++
		}
		if dups+gaps > 0 && dups+gaps <= 10 && v != last[w]+1 {
			t.Errorf("window %s: count %d follows %d (partition %d, offset %d)", w, v, last[w], r.Partition, r.Offset)
		}
		last[w] = v
	}
	wrong := 0
	for w, n := range want {
		if last[w] != n {
			if wrong < 10 {
				t.Errorf("window %s: final count %d, want %d", w, last[w], n)
			}
			wrong++
		}
	}
	extra := 0
	for w := range last {
		if _, ok := want[w]; !ok {
			extra++
		}
	}
	if dups+gaps+wrong+extra > 0 {
		t.Fatalf("exactly-once violated: %d duplicates, %d gaps, %d windows with a wrong final count, %d windows not in the input, in %d records", dups, gaps, wrong, extra, len(recs))
	}
}
