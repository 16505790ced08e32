package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// The crash test's durations, in event time: an unpaid order is emitted
// 2 × 2 s after it, when its 10 s minute (grace 1 s) has often closed.
var crashParams = Params{Within: 2 * time.Second, Minute: 10 * time.Second, MinuteGrace: time.Second,
	Hour: time.Minute, HourGrace: 2 * time.Second}

const (
	crashPartitions = 4
	crashAccounts   = 12 // per partition
)

// TestCrashRollup runs the rollup binary (a left join whose unpaid orders
// are emitted by stream-time advances, into minute windows that drop those
// whose minute has closed, suppressed until the minutes close, rolled up
// behind a repartition into suppressed hours) as subprocesses against a
// broker that outlives them (the real one when KAFKA_BROKERS is set, kfake
// otherwise), kills them with SIGKILL at random moments (each kill aimed at
// an open transaction of the victim; sometimes also deleting its state
// directory; with 2 instances one victim stays down past the session
// timeout) while a backlog and then a steady stream of events are
// processed, restarts them, and checks that a read_committed reader sees
// every closed minute and hour exactly once, with its exact tally, and
// nothing else.
//
// Nearly every transaction moves stream time: it expires buffered orders
// (emitting the unpaid ones, some into closed minutes, dropped there inside
// the record that moved time), releases closed minutes (to the output and
// the repartition topic) and, in the roll-up's stage, closed hours. Each
// partition's input is processed in order and its stream time is restored
// exactly, so the output is a function of the input: the expectation is the
// topology's output in the test driver, partition by partition, without
// crashes (TestRollupGen checks that driver run against what the generator
// knows). Some events are too late for the join, and must count nowhere.
// It has one variant per number of instances (1, 2). The seed is printed;
// SLUICE_CRASH_SEED=N reruns it.
func TestCrashRollup(t *testing.T) {
	crashtest.Run(t, "rollup", []int{1, 2}, crashRollup)
}

func crashRollup(t *testing.T, bin string, instances int, seed uint64) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash-rollup")
	events, minutes, hours := app+"-events", app+"-minutes", app+"-hours"
	// Events carry timestamps from 2024 and outputs inherit them.
	crashtest.CreateTopics(t, brokers, crashPartitions, crashtest.RetainForever(), events, minutes, hours)

	gen := newRollupGen(rng.Uint64(), events, crashPartitions, crashAccounts)
	// The generator names each record's partition (events that of their
	// key under Kafka's default partitioner, ticks their own).
	produce := crashtest.NewProducer(t, brokers, events)

	h := crashtest.New(t, bin, brokers, app)
	h.Args = []string{"-events", events, "-minutes", minutes, "-hours", hours,
		"-within", crashParams.Within.String(), "-minute", crashParams.Minute.String(),
		"-minute-grace", crashParams.MinuteGrace.String(), "-hour", crashParams.Hour.String(),
		"-hour-grace", crashParams.HourGrace.String()}
	defer h.KillAll()

	// A backlog, then a steady stream of events for as long as the kills
	// go on, so that every kill lands while the instances have work in
	// flight.
	produce(gen.next(1000))
	names := h.StartAll(instances)
	stopInput := crashtest.SteadyInput(50*time.Millisecond, func() { produce(gen.next(10)) })
	defer stopInput()

	c := h.Chaos(rng, names, 10)
	closedDuringKills := len(testbroker.ReadCommitted(t, brokers, minutes))
	stopInput()
	produce(gen.finish())

	// The events' stage has committed its whole input when its group's
	// offsets reach the end of the events; the roll-up's input is a
	// transactional topic, whose end is a commit marker: wait for its
	// outputs instead (any duplicate shows in the read after the stop).
	want, stats := expected(t, gen)
	h.WaitCommitted(app+"-events", events, 3*time.Minute)
	h.WaitCount(minutes, stats.minutes, 2*time.Minute)
	h.WaitCount(hours, stats.hours, 2*time.Minute)
	h.StopAll()
	got := append(outputs("minutes", testbroker.ReadCommitted(t, brokers, minutes)), outputs("hours", testbroker.ReadCommitted(t, brokers, hours))...)
	t.Logf("%d instance(s): %v; %d records (%d orders, %d payments, %d late events, %d ticks); expected %d minutes and %d hours; %d of %d unpaid orders dropped as late, %d counted; %d minutes closed before the kills ended",
		instances, c, gen.records, gen.orders, gen.payments, gen.late, gen.ticks,
		stats.minutes, stats.hours, stats.unpaid-stats.counted, stats.unpaid, stats.counted, closedDuringKills)
	crashtest.CheckExactlyOnce(t, got, want, seed, nil)
	c.CheckMidTxn(t, seed)
	if closedDuringKills == 0 || stats.counted == 0 || stats.counted >= stats.unpaid {
		t.Errorf("%d minutes closed during the kills, %d of %d unpaid orders counted: want some of each, and some dropped as late (seed %d)",
			closedDuringKills, stats.counted, stats.unpaid, seed)
	}
}

// rollupBase is the event time of the generated input's start.
var rollupBase = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// rollupGen makes the crash test's input, partition by partition, in
// increasing event time per partition: every 50 to 400 ms an order (55 %)
// or a payment of a random account of the partition. About one record in
// 15 is preceded by a clock tick halfway to it; about one in 50 by an event
// more than the join window behind the partition's stream time (1 to 11 s
// more): late, it counts nowhere. finish ends each partition with Closing.
type rollupGen struct {
	mu      sync.Mutex
	rng     *rand.Rand
	topic   string
	parts   []*genPart
	closers []string
	// What was generated, for the test's log.
	records, orders, payments, late, ticks int
}

// genPart is the state of one partition.
type genPart struct {
	p        int32
	accounts []string
	st       int64         // stream time after the records generated so far (ms)
	recs     []*kgo.Record // every record generated, in order
}

func newRollupGen(seed uint64, topic string, partitions, accounts int) *rollupGen {
	g := &rollupGen{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), topic: topic, closers: Closers(topic, partitions)}
	keys := crashtest.KeysByPartition(topic, partitions, accounts, func(i int) string { return fmt.Sprintf("account-%d", i) })
	for p, names := range keys {
		g.parts = append(g.parts, &genPart{p: int32(p), accounts: names, st: rollupBase.UnixMilli()})
	}
	return g
}

// next returns the next n events of every partition (with their ticks and
// late events).
func (g *rollupGen) next(n int) []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	var recs []*kgo.Record
	for _, pg := range g.parts {
		for range n {
			recs = g.step(pg, recs)
		}
	}
	return recs
}

// REQUIRES: g.mu held.
func (g *rollupGen) step(pg *genPart, recs []*kgo.Record) []*kgo.Record {
	t := pg.st + 50 + g.rng.Int64N(350)
	if g.rng.IntN(15) == 0 {
		pg.st += (t - pg.st) / 2
		recs = g.add(pg, recs, "", "tick", pg.st)
		g.ticks++
	}
	kind := func() string {
		if g.rng.IntN(100) < 55 {
			return "order"
		}
		return "payment"
	}
	if pg.st-rollupBase.UnixMilli() > 15_000 && g.rng.IntN(50) == 0 {
		ts := pg.st - crashParams.Within.Milliseconds() - 1000 - g.rng.Int64N(10_000)
		recs = g.add(pg, recs, pg.accounts[g.rng.IntN(len(pg.accounts))], kind(), ts)
		g.late++
	}
	k := kind()
	if k == "order" {
		g.orders++
	} else {
		g.payments++
	}
	recs = g.add(pg, recs, pg.accounts[g.rng.IntN(len(pg.accounts))], k, t)
	pg.st = t
	return recs
}

func (g *rollupGen) add(pg *genPart, recs []*kgo.Record, key, value string, ts int64) []*kgo.Record {
	g.records++
	r := &kgo.Record{Topic: g.topic, Partition: pg.p, Value: []byte(value), Timestamp: time.UnixMilli(ts).UTC()}
	if key != "" {
		r.Key = []byte(key)
	}
	pg.recs = append(pg.recs, r)
	return append(recs, r)
}

// finish returns, per partition, the records of Closing, which close every
// window of the partition but the last one's.
func (g *rollupGen) finish() []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	var recs []*kgo.Record
	for _, pg := range g.parts {
		for _, r := range Closing(g.topic, pg.p, g.closers[pg.p], time.UnixMilli(pg.st).UTC()) {
			g.records++
			pg.recs = append(pg.recs, r)
			recs = append(recs, r)
		}
	}
	return recs
}

// expectStats is what the expected output holds.
type expectStats struct {
	minutes, hours  int
	unpaid, counted int // orders no payment paired with; unpaid outcomes in the minutes
}

// expected runs every partition's generated records through the topology in
// the test driver and returns its outputs, "topic key value" each: what a
// run without crashes writes. Only the generated late events may fail, as
// late. It also counts, from the input alone, the orders that no payment
// pairs with.
func expected(t *testing.T, g *rollupGen) (map[string]int, expectStats) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	topo, err := Topology("events", "minutes", "hours", crashParams)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	var st expectStats
	late := 0
	within := crashParams.Within.Milliseconds()
	for _, pg := range g.parts {
		d := streamtest.New(t, topo)
		var ok []*kgo.Record // the records that did not fail
		for _, r := range pg.recs {
			err := d.PipeMessage("events", streamtest.Message{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp})
			switch {
			case errors.Is(err, stream.ErrLateRecord):
				late++
			case err != nil:
				t.Fatalf("partition %d: %s=%s at %s: %v", pg.p, r.Key, r.Value, r.Timestamp, err)
			default:
				ok = append(ok, r)
			}
		}
		for _, out := range []string{"minutes", "hours"} {
			for _, m := range d.Messages(out) {
				want[out+" "+string(m.Key)+" "+string(m.Value)]++
				if out == "hours" {
					st.hours++
					continue
				}
				st.minutes++
				w, err := ParseWindow(string(m.Value))
				if err != nil {
					t.Fatal(err)
				}
				st.counted += int(w.Unpaid)
			}
		}
		for i, r := range ok {
			if string(r.Value) != "order" {
				continue
			}
			paid := false
			for _, o := range ok[max(0, i-400):min(len(ok), i+400)] {
				dt := o.Timestamp.UnixMilli() - r.Timestamp.UnixMilli()
				paid = paid || (string(o.Value) == "payment" && string(o.Key) == string(r.Key) && dt >= -within && dt <= within)
			}
			if !paid {
				st.unpaid++
			}
		}
	}
	if late != g.late {
		t.Fatalf("%d records failed as late in the test driver, %d were generated late", late, g.late)
	}
	return want, st
}

// outputs returns recs as "name key value" each.
func outputs(name string, recs []*kgo.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = name + " " + string(r.Key) + " " + string(r.Value)
	}
	return out
}

// TestRollupGen checks the crash test's expectation machinery without a
// broker: the generated late events, and only they, fail as late; some
// unpaid orders are counted and some dropped as late in their minute; the
// closing records close minutes and hours of every partition.
func TestRollupGen(t *testing.T) {
	gen := newRollupGen(7, "events", crashPartitions, crashAccounts)
	gen.next(1500)
	gen.next(300)
	gen.finish()
	want, st := expected(t, gen)
	if st.minutes == 0 || st.hours == 0 || st.counted == 0 || st.counted >= st.unpaid || gen.late == 0 || gen.ticks == 0 || len(want) == 0 {
		t.Errorf("%d minutes, %d hours, %d of %d unpaid orders counted, %d late events, %d ticks: want some of each, and some unpaid dropped",
			st.minutes, st.hours, st.counted, st.unpaid, gen.late, gen.ticks)
	}
	t.Logf("%d records: %d minutes, %d hours; %d of %d unpaid orders counted, %d dropped as late; %d late events",
		gen.records, st.minutes, st.hours, st.counted, st.unpaid, st.unpaid-st.counted, gen.late)
}
