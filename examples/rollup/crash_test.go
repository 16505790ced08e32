package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
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
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := crashtest.Seed(t)
	bin := crashtest.Build(t, "rollup")
	for _, n := range []int{1, 2} {
		name := fmt.Sprintf("%d instances", n)
		if n == 1 {
			name = "1 instance"
		}
		t.Run(name, func(t *testing.T) {
			crashRollup(t, bin, n, seed+uint64(n))
		})
	}
}

func crashRollup(t *testing.T, bin string, instances int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash-rollup")
	events, minutes, hours := app+"-events", app+"-minutes", app+"-hours"
	// Events carry timestamps from 2024 and outputs inherit them: keep
	// them past the broker's default time retention.
	forever := "-1"
	for _, topic := range []string{events, minutes, hours} {
		testbroker.CreateTopic(t, brokers, topic, crashPartitions, map[string]*string{"retention.ms": &forever})
	}

	gen := newRollupGen(rng.Uint64(), events, crashPartitions, crashAccounts)
	// The generator names each record's partition (events that of their
	// key under Kafka's default partitioner, ticks their own).
	prod := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(events), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(recs []*kgo.Record) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Errorf("producing to %s: %v", events, err)
		}
	}

	h := crashtest.New(t, bin, brokers, app)
	h.Flags = func(name string) []string {
		return []string{
			"-brokers", strings.Join(brokers, ","),
			"-app", app, "-events", events, "-minutes", minutes, "-hours", hours,
			"-within", crashParams.Within.String(), "-minute", crashParams.Minute.String(),
			"-minute-grace", crashParams.MinuteGrace.String(), "-hour", crashParams.Hour.String(),
			"-hour-grace", crashParams.HourGrace.String(),
			"-state-dir", h.StateDir(name), "-instance-id", name,
			"-commit-interval", "100ms", "-v"}
	}
	defer h.KillAll()

	// A backlog, then a steady stream of events for as long as the kills
	// go on, so that every kill lands while the instances have work in
	// flight.
	produce(gen.next(1000))
	names := make([]string, instances)
	for i := range names {
		names[i] = fmt.Sprintf("i%d", i+1)
		h.Start(names[i])
	}
	stopInput := crashtest.SteadyInput(50*time.Millisecond, func() { produce(gen.next(10)) })
	defer stopInput()

	const kills = 10
	c := h.Chaos(rng, names, kills)
	closedDuringKills := len(testbroker.ReadCommitted(t, brokers, minutes))
	stopInput()
	produce(gen.finish())

	// The events' stage has committed its whole input when its group's
	// offsets reach the end of the events; the roll-up's input is a
	// transactional topic, whose end is a commit marker: wait for its
	// outputs instead (any duplicate shows in the read after the stop).
	want, stats := expected(t, gen)
	waitCommitted(t, h, names, app+"-events", events, 3*time.Minute)
	h.WaitCount(minutes, stats.minutes, 2*time.Minute)
	h.WaitCount(hours, stats.hours, 2*time.Minute)
	for _, n := range names {
		h.Stop(n)
	}
	got := append(outputs("minutes", testbroker.ReadCommitted(t, brokers, minutes)), outputs("hours", testbroker.ReadCommitted(t, brokers, hours))...)
	t.Logf("%d instance(s): %d kills, %d landed mid-transaction, %d state directories wiped, %d outages past the session timeout; %d records (%d orders, %d payments, %d late events, %d ticks); expected %d minutes and %d hours; %d of %d unpaid orders dropped as late, %d counted; %d minutes closed before the kills ended",
		instances, c.Kills, c.MidTxn, c.Wiped, c.Outages, gen.records, gen.orders, gen.payments, gen.late, gen.ticks,
		stats.minutes, stats.hours, stats.unpaid-stats.counted, stats.unpaid, stats.counted, closedDuringKills)
	checkOutputs(t, got, want, seed)
	if c.MidTxn == 0 {
		t.Errorf("no kill landed while a transaction was open: the test proved nothing (seed %d)", seed)
	}
	if closedDuringKills == 0 || stats.counted == 0 || stats.counted >= stats.unpaid {
		t.Errorf("%d minutes closed during the kills, %d of %d unpaid orders counted: want some of each, and some dropped as late (seed %d)",
			closedDuringKills, stats.counted, stats.unpaid, seed)
	}
}

// waitCommitted waits until the consumer group has committed the end of
// topic in every partition (so every record, the closing ticks included,
// was processed in a committed transaction), timeout passed, or every
// instance has exited; it fails the test in the latter two cases.
func waitCommitted(t *testing.T, h *crashtest.Harness, names []string, group, topic string, timeout time.Duration) {
	t.Helper()
	adm := testbroker.Admin(t, h.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ends, err := adm.ListEndOffsets(ctx, topic)
	cancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing the end offsets of %s: %v", topic, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		offs, err := adm.FetchOffsets(ctx, group)
		cancel()
		behind := 0
		ends.Each(func(e kadm.ListedOffset) {
			if o, ok := offs.Lookup(topic, e.Partition); err != nil || !ok || o.At < e.Offset {
				behind++
			}
		})
		if behind == 0 {
			return
		}
		alive := false
		for _, n := range names {
			if p := h.Proc(n); p != nil && !p.Exited() {
				alive = true
			}
		}
		if !alive || time.Now().After(deadline) {
			t.Fatalf("the group %s has not committed the end of %d partitions of %s (alive: %v, after up to %v; last error %v)",
				group, behind, topic, alive, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
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
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	for p := range partitions {
		g.parts = append(g.parts, &genPart{p: int32(p), st: rollupBase.UnixMilli()})
	}
	for i := 0; ; i++ {
		name := fmt.Sprintf("account-%d", i)
		pg := g.parts[part.Partition(&kgo.Record{Key: []byte(name)}, partitions)]
		if len(pg.accounts) < accounts {
			pg.accounts = append(pg.accounts, name)
		}
		if !slices.ContainsFunc(g.parts, func(pg *genPart) bool { return len(pg.accounts) < accounts }) {
			return g
		}
	}
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

// checkOutputs asserts that got (the outputs, read_committed) holds every
// record of want exactly once and nothing else.
func checkOutputs(t *testing.T, got []string, want map[string]int, seed uint64) {
	t.Helper()
	seen := map[string]int{}
	shown := 0
	show := func(format string, a ...any) {
		if shown < 10 {
			t.Errorf(format, a...)
		}
		shown++
	}
	for _, k := range got {
		seen[k]++
		if want[k] == 0 && seen[k] == 1 {
			show("output %q is not one the input makes", k)
		}
		if want[k] > 0 && seen[k] == want[k]+1 {
			show("output %q emitted more than once", k)
		}
	}
	missing, extra := 0, 0
	for k, n := range want {
		if seen[k] < n {
			missing += n - seen[k]
			show("output %q is missing", k)
		}
	}
	for k, n := range seen {
		extra += max(0, n-want[k])
	}
	if missing+extra > 0 {
		t.Fatalf("exactly-once violated: of %d expected outputs, %d missing, %d extra (duplicates or unknown); %d read in all (seed %d)",
			len(want), missing, extra, len(got), seed)
	}
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
