package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/stream"
	"github.com/sluicehq/sluice/streamtest"
)

// The crash test's windows, in event time: the generated sessions keep
// margins of seconds to both, so that no boundary (inclusive or not) decides
// an outcome.
const (
	crashGap        = 10 * time.Second
	crashGrace      = 10 * time.Second
	crashPartitions = 4
)

// TestCrashSessions runs the sessions binary (session windows whose counts
// are held back by SuppressUntilWindowCloses and emitted once, when stream
// time closes them) as subprocesses against a broker that outlives them (the
// real one when KAFKA_BROKERS is set, kfake otherwise), kills them with
// SIGKILL at random moments (each kill aimed at an open transaction of the
// victim; sometimes also deleting its state directory) while a backlog and
// then a steady stream of events are processed, restarts them, and checks
// that a read_committed reader sees every session of the generated input
// exactly once, with its exact "start end count", and nothing else.
//
// Unlike the other crash tests, windows close all the time here: the input
// is in increasing event time per partition, sessions of a user are
// separated by more than gap + grace, and clock ticks (empty keys) move
// stream time between events, so nearly every transaction releases closed
// sessions from the suppression buffer, and kills land in the middle of
// those releases; a restarted task must release exactly the sessions the
// killed one did not commit, relying on its restored stream time. Some
// sessions are split by a hole wider than the gap and merged later by an
// out-of-order event within the grace (deleting two buffered sessions); some
// events are later than the grace and must be dropped. At the end a tick an
// hour ahead closes every session. It has one variant per number of
// instances (1, 2). The seed is printed; SLUICE_CRASH_SEED=N reruns it.
func TestCrashSessions(t *testing.T) {
	crashtest.Run(t, "sessions", []int{1, 2}, crashSessions)
}

func crashSessions(t *testing.T, bin string, instances int, seed uint64) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash-sessions")
	events, output := app+"-events", app+"-sessions"
	// Events carry timestamps from 2024 and outputs inherit them.
	crashtest.CreateTopics(t, brokers, crashPartitions, crashtest.RetainForever(), events, output)

	gen := newSessionGen(rng.Uint64(), events, crashPartitions, 40)
	// The generator names each record's partition (events that of their
	// key under Kafka's default partitioner, ticks their own).
	produce := crashtest.NewProducer(t, brokers, events)

	h := crashtest.New(t, bin, brokers, app)
	h.Args = []string{"-events", events, "-output", output, "-gap", crashGap.String(), "-grace", crashGrace.String()}
	defer h.KillAll()

	// A backlog, then a steady stream of events for as long as the kills
	// go on, so that every kill lands while the instances have work in
	// flight.
	produce(gen.next(2500))
	names := h.StartAll(instances)
	stopInput := crashtest.SteadyInput(50*time.Millisecond, func() { produce(gen.next(20)) })
	defer stopInput()

	c := h.Chaos(rng, names, 12)
	closedDuringKills := len(testbroker.ReadCommitted(t, brokers, output))
	stopInput()
	// Finish every open session, then a tick an hour ahead per partition
	// closes them all.
	produce(gen.finish())
	want := gen.sessions()

	h.WaitCommitted(app+"-events", events, 3*time.Minute)
	h.StopAll()
	t.Logf("%d instance(s): %v; %d records (%d events, %d late events, %d merging events, %d ticks), %d sessions (%d merged), %d of them closed before the kills ended",
		instances, c, gen.records, gen.events, gen.late, gen.bridges, gen.ticks, len(want), gen.bridges, closedDuringKills)
	checkSessions(t, testbroker.ReadCommitted(t, brokers, output), want, seed)
	c.CheckMidTxn(t, seed)
	if closedDuringKills == 0 {
		t.Errorf("no session closed while the kills went on: the test proved nothing about closing windows (seed %d)", seed)
	}
}

// sessionBase is the event time of the generated input's start.
var sessionBase = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// sessionGen makes the crash test's input, partition by partition, in
// increasing event time per partition, and knows the sessions it makes.
//
// Each user (its partition is its key's under Kafka's default partitioner)
// alternates between a session of 2 to 8 events, spaced 0.2 s to gap/2,
// and a silence of gap + grace + 5 s to 30 s. One session in eight has a
// hole of 1.3 to 1.6 gaps between two of its events, splitting it in two
// sessions, and an event in the middle of the hole, produced right after
// the event that ends the hole: no more than 0.8 gap (less than the grace)
// behind stream time, it merges the two sessions, neither closed yet (the
// first closes at its end + gap + grace). About one record in 60 is
// preceded by an event of a random user of the partition without a session
// within a gap of it, at least 1 s more than gap + grace behind the
// partition's stream time: the session it would start is closed already,
// so it is late and dropped. About one in 15 is preceded by a clock tick halfway between the
// previous record and it. finish completes the open sessions and ends each
// partition with a tick an hour after its last event.
type sessionGen struct {
	mu    sync.Mutex
	rng   *rand.Rand
	parts []*partGen
	want  map[string]int // sessionKey of each session made
	// What was generated, for the test's log.
	records, events, late, bridges, ticks int
}

// partGen is the state of one partition.
type partGen struct {
	p     int32
	users []*genUser
	st    int64 // stream time after the records generated so far (ms)
}

// genUser is a user's state. A session is open while n > 0.
type genUser struct {
	name        string
	next        int64 // event time of the user's next event (ms)
	n, planned  int   // events of the open session made, and planned
	hole        int   // the hole follows the event of this number (1-based), 0: none
	start, last int64 // the open session's first and last events
	count       int64 // its events, the merging one included
}

func newSessionGen(seed uint64, topic string, partitions, usersPerPartition int) *sessionGen {
	g := &sessionGen{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), want: map[string]int{}}
	base := sessionBase.UnixMilli()
	keys := crashtest.KeysByPartition(topic, partitions, usersPerPartition, func(i int) string { return fmt.Sprintf("user-%d", i) })
	for p, names := range keys {
		pg := &partGen{p: int32(p), st: base}
		for _, name := range names {
			pg.users = append(pg.users, &genUser{name: name, next: base + g.rng.Int64N(60_000)})
		}
		g.parts = append(g.parts, pg)
	}
	return g
}

// next returns the next n records of every partition.
func (g *sessionGen) next(n int) []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	var recs []*kgo.Record
	for _, pg := range g.parts {
		for i := 0; i < n; i++ {
			recs = g.step(pg, recs, false)
		}
	}
	return recs
}

// finish returns the records that complete every open session, and a tick
// per partition an hour after its last event, which closes them all.
func (g *sessionGen) finish() []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	var recs []*kgo.Record
	for _, pg := range g.parts {
		for pg.open() {
			recs = g.step(pg, recs, true)
		}
		pg.st += time.Hour.Milliseconds()
		recs = g.tick(pg, recs, pg.st)
	}
	return recs
}

// sessions returns the sessions generated, each once: the expected output.
func (g *sessionGen) sessions() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.want
}

func (pg *partGen) open() bool {
	for _, u := range pg.users {
		if u.n > 0 {
			return true
		}
	}
	return false
}

// step appends the next event of partition pg to recs, maybe preceded by a
// tick or a late event, and followed by a merging event. finishing: only
// events of open sessions.
//
// REQUIRES: g.mu held; finishing only while pg.open().
func (g *sessionGen) step(pg *partGen, recs []*kgo.Record, finishing bool) []*kgo.Record {
	var u *genUser
	for _, c := range pg.users {
		if (!finishing || c.n > 0) && (u == nil || c.next < u.next) {
			u = c
		}
	}
	t := u.next
	if t-pg.st >= 2 && g.rng.IntN(15) == 0 {
		pg.st += (t - pg.st) / 2
		recs = g.tick(pg, recs, pg.st)
	}
	if !finishing && pg.st-sessionBase.UnixMilli() > time.Minute.Milliseconds() && g.rng.IntN(60) == 0 {
		// Late: more than gap + grace behind stream time, by 1 s to 21 s,
		// for a user with no session within a gap of it, so that the
		// session it would start would be closed already (a record
		// merging into an open session is never late, as in Kafka
		// Streams). The user's earlier sessions have closed: they ended
		// more than gap + grace before the latest one began.
		ts := pg.st - (crashGap + crashGrace).Milliseconds() - 1000 - g.rng.Int64N(20_000)
		lu := pg.users[g.rng.IntN(len(pg.users))]
		if lu.last >= ts-crashGap.Milliseconds() && lu.start <= ts+crashGap.Milliseconds() {
			lu = nil
		}
		if lu != nil {
			recs = g.event(pg, recs, lu.name, "late", ts)
			g.late++
		}
	}
	recs = g.event(pg, recs, u.name, "event", t)
	g.events++
	pg.st = max(pg.st, t)
	if u.n == 0 {
		u.start, u.count, u.planned, u.hole = t, 0, 2+g.rng.IntN(7), 0
		if g.rng.IntN(8) == 0 {
			u.hole = 1 + g.rng.IntN(u.planned-1)
		}
	}
	u.n++
	u.count++
	if u.hole > 0 && u.n == u.hole+1 {
		// The event that ends the hole has come: the merging event,
		// halfway through the hole, right after it.
		recs = g.event(pg, recs, u.name, "merge", u.last+(t-u.last)/2)
		u.count++
		g.bridges++
	}
	u.last = t
	switch {
	case u.n == u.planned:
		g.want[sessionKey(u.name, Session{fromMs(u.start), fromMs(t), u.count})]++
		u.n = 0
		u.next = t + (crashGap + crashGrace + 5*time.Second).Milliseconds() + g.rng.Int64N(25_000)
	case u.n == u.hole:
		u.next = t + crashGap.Milliseconds()*13/10 + g.rng.Int64N(crashGap.Milliseconds()*3/10)
	default:
		u.next = t + 200 + g.rng.Int64N(crashGap.Milliseconds()/2-200)
	}
	return recs
}

func (g *sessionGen) event(pg *partGen, recs []*kgo.Record, user, value string, ts int64) []*kgo.Record {
	g.records++
	return append(recs, &kgo.Record{Partition: pg.p, Key: []byte(user), Value: []byte(value), Timestamp: fromMs(ts)})
}

func (g *sessionGen) tick(pg *partGen, recs []*kgo.Record, ts int64) []*kgo.Record {
	g.records++
	g.ticks++
	return append(recs, &kgo.Record{Partition: pg.p, Value: []byte("tick"), Timestamp: fromMs(ts)})
}

func fromMs(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// sessionKey is a session's output record as "user start end count".
func sessionKey(user string, s Session) string { return user + " " + s.String() }

// checkSessions asserts that recs (the output, read_committed) hold every
// session of want exactly once and nothing else.
func checkSessions(t *testing.T, recs []*kgo.Record, want map[string]int, seed uint64) {
	t.Helper()
	var got []string
	bad := 0
	for _, r := range recs {
		s, err := ParseSession(string(r.Value))
		if err != nil {
			if bad++; bad <= 10 {
				t.Errorf("output %q=%q (partition %d, offset %d): %v", r.Key, r.Value, r.Partition, r.Offset, err)
			}
			continue
		}
		got = append(got, sessionKey(string(r.Key), s))
	}
	crashtest.CheckExactlyOnce(t, got, want, seed, func(k string) string {
		user, _, _ := strings.Cut(k, " ")
		return "the user's sessions: " + userSessions(want, user)
	})
	if bad > 0 {
		t.Fatalf("exactly-once violated: %d of %d records unparsable (seed %d)", bad, len(recs), seed)
	}
}

// userSessions lists user's sessions in want, for a failure message.
func userSessions(want map[string]int, user string) string {
	var out []string
	for k := range want {
		if s, ok := strings.CutPrefix(k, user+" "); ok {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// TestSessionGen runs the crash test's input through the topology in the
// test driver (no broker, no crash; one driver per partition, since each
// partition is a task of its own with its own stream time) and checks that
// the output is exactly the sessions the generator says it made, and that
// exactly its late events fail as late: the crash test's expectations are
// those of the topology without crashes.
func TestSessionGen(t *testing.T) {
	topo, err := Topology("events", "sessions", crashGap, crashGrace)
	if err != nil {
		t.Fatal(err)
	}
	gen := newSessionGen(7, "events", crashPartitions, 40)
	recs := append(gen.next(1500), gen.next(500)...)
	recs = append(recs, gen.finish()...)
	byPart := make([][]*kgo.Record, crashPartitions)
	for _, r := range recs {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	var out []*kgo.Record
	late := 0
	for p, prs := range byPart {
		d := streamtest.New(t, topo)
		for _, r := range prs {
			err := d.PipeMessage("events", streamtest.Message{Key: r.Key, Value: r.Value, Timestamp: r.Timestamp})
			switch {
			case errors.Is(err, stream.ErrLateRecord) && string(r.Value) == "late":
				late++
			case err != nil:
				t.Fatalf("partition %d: %s=%s at %s: %v", p, r.Key, r.Value, r.Timestamp, err)
			}
		}
		for _, m := range d.Messages("sessions") {
			out = append(out, &kgo.Record{Key: m.Key, Value: m.Value, Partition: int32(p), Offset: m.Offset})
		}
	}
	if late != gen.late || gen.late == 0 || gen.bridges == 0 || gen.ticks == 0 {
		t.Errorf("%d late events failed as late, of %d generated; %d merging events, %d ticks (want some of each)", late, gen.late, gen.bridges, gen.ticks)
	}
	want := gen.sessions()
	checkSessions(t, out, want, 7)
	t.Logf("%d records: %d sessions (%d merged), %d late events", len(recs), len(want), gen.bridges, gen.late)
}
