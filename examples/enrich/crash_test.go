package main

import (
	"fmt"
	"math/rand/v2"
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
	crashtest.Run(t, "enrich", []int{1, 2}, crashEnrich)
}

func crashEnrich(t *testing.T, bin string, instances int, seed uint64) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash-enrich")
	views, users, output := app+"-views", app+"-users", app+"-counts"
	compact := "compact"
	crashtest.CreateTopics(t, brokers, 4, map[string]*string{"cleanup.policy": &compact}, users)
	// The views carry event timestamps from 2024, and the outputs inherit
	// them.
	crashtest.CreateTopics(t, brokers, 4, crashtest.RetainForever(), views, output)

	gen := newViewGen(rng.Uint64(), 300, 8)
	h := crashtest.New(t, bin, brokers, app)
	h.Args = []string{"-views", views, "-users", users, "-output", output, "-grace", "1h"}
	defer h.KillAll()
	names := h.StartAll(instances)
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
	stopInput := crashtest.SteadyInput(50*time.Millisecond, func() { crashtest.Produce(t, brokers, views, gen.next(100)) })

	c := h.Chaos(rng, names, 10)
	stopInput()
	want, total := gen.counts()
	seen := h.WaitCount(output, total, 3*time.Minute)
	h.StopAll()
	t.Logf("%d instance(s): %v; %d page views (%d of unknown users), %d windows of %d countries",
		instances, c, gen.views, gen.unknown, len(want), gen.countries)
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the kills", seen, total)
	}
	crashtest.CheckRunningCounts(t, testbroker.ReadCommitted(t, brokers, output), want)
	c.CheckMidTxn(t, seed)
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
