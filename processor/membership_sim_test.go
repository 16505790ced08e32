package processor

import (
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMembershipSim is a randomized simulation of group membership (issue
// 9): seeded schedules of joins, clean leaves, kills, pauses past the
// session timeout (zombies), broker-side aborts and lost EndTxn responses
// run over 2 to 4 instances (in-process processors on one kfake cluster,
// each behind its own proxy; see membership_harness_test.go) of a topology
// with a repartition, stores, a wall-clock timer that releases buffered
// items in batches and a stream-time timer, while a producer writes a known
// set of ids. Instances differ in their commit intervals (100 ms to 6 s).
// After each schedule the survivors drain the input, stop, and a
// read_committed reader checks that every effect happened exactly once:
// each word's running count reads 1..n, each id is released once, batch
// numbers run 1..n per partition, the stream-time ticks are exactly those
// of the committed repartition topic, and every instance's Pebble state is
// its committed changelog replayed to its checkpoints; that the run made
// progress (it drains within a bound; otherwise goroutine stacks and state
// are dumped); and that a stage restarted only on an instance a fault was
// aimed at (a join or a leave of another instance must cost no restart).
//
// Four directed scenarios reproduce known shapes deterministically:
//   - second-revoke: a task revoked in the second rebalance inside one
//     transaction (franz-go's GroupTransactSession calls the revoke callback
//     once between two Ends) must not be kept when its partition returns;
//   - zombie-timer: an instance paused past the session timeout, with items
//     buffered and no transaction open, must not commit its timer's release
//     when it resumes (its transaction consumed nothing, so no
//     TxnOffsetCommit fences it);
//   - joins-cost-no-restart: joins and leaves of other instances cost no
//     stage restart;
//   - simultaneous-start: three instances of a fresh application start at
//     once and all of them run.
//
// By default 3 random schedules of fixed seeds (simDefaultSeeds) run after
// the directed scenarios (2 at a time: -parallel defaults to GOMAXPROCS);
// about 2 minutes under -race on 2 cores. The schedules are fixed so that
// `make test` does not fail on a seed nobody has seen before; the search for
// new ones is a flag away: -sim.random runs 3 schedules of new seeds,
// -sim.long 40, -sim.schedules=N N. A failure prints its seed, the schedule and what
// happened; replay with
//
//	go test ./processor -run TestMembershipSim/random -sim.seed=N[,M...]
//
// (the schedule is a function of the seed; the timing of a run is not, so a
// race may need a few replays). Skipped under -short.
func TestMembershipSim(t *testing.T) {
	if testing.Short() {
		t.Skip("membership simulation: several minutes of broker time; run without -short")
	}
	t.Run("directed", func(t *testing.T) {
		t.Run("second-revoke", func(t *testing.T) { t.Parallel(); simSecondRevoke(t) })
		t.Run("zombie-timer", func(t *testing.T) { t.Parallel(); simZombieTimer(t) })
		t.Run("joins-cost-no-restart", func(t *testing.T) { t.Parallel(); simJoinsNoRestart(t) })
		t.Run("simultaneous-start", func(t *testing.T) { t.Parallel(); simSimultaneousStart(t) })
	})
	seeds := simSeeds()
	t.Run("random", func(t *testing.T) {
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
				t.Parallel()
				runSchedule(t, randomSchedule(seed))
			})
		}
	})
}

var (
	simSeed      = flag.String("sim.seed", "", "membership simulation: replay the random schedules of these seeds only (comma-separated)")
	simLong      = flag.Bool("sim.long", false, "membership simulation: run 40 random schedules")
	simSchedules = flag.Int("sim.schedules", 0, "membership simulation: run this many random schedules of new seeds (default: the fixed ones; 40 with -sim.long)")
	simRandom    = flag.Bool("sim.random", false, "membership simulation: run 3 random schedules of new seeds instead of the fixed ones")
)

// simDefaultSeeds are the schedules `go test` runs without flags: seeds
// that the searches of 2026-12-07 ran (5 and 14 restarted unfaulted
// instances and 25 released ids twice on the code before the membership
// fixes; all three pass since).
var simDefaultSeeds = []uint64{5, 14, 25}

// simSeeds returns the seeds of the random schedules to run.
func simSeeds() []uint64 {
	if *simSeed != "" {
		var out []uint64
		for _, f := range strings.Split(*simSeed, ",") {
			seed, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil || seed == 0 {
				panic(fmt.Sprintf("-sim.seed=%q: want positive integers separated by commas", *simSeed))
			}
			out = append(out, seed)
		}
		return out
	}
	if !*simRandom && !*simLong && *simSchedules == 0 {
		return simDefaultSeeds
	}
	n := 3
	if *simLong {
		n = 40
	}
	if *simSchedules > 0 {
		n = *simSchedules
	}
	base := uint64(time.Now().UnixNano())
	out := make([]uint64, n)
	for i := range out {
		out[i] = (base + uint64(i)*0x9e3779b97f4a7c15) % 1_000_000_000
		if out[i] == 0 {
			out[i] = 1
		}
	}
	return out
}

// simEvent is one step of a schedule.
type simEvent struct {
	at   time.Duration
	kind string // start, restart, leave, kill, pause, fault
	slot string // A, B, ...

	commit      time.Duration // start, restart
	reuseDir    bool          // restart: keep the state directory
	dur         time.Duration // pause
	atRelease   bool          // pause: at the next release with buffered items
	lag         time.Duration // pause: the group coordinator stays unreachable after resume
	untilEndTxn bool          // pause: ... until the next EndTxn passes (at most lag)
	fault       string        // fault: see simInstance.brokerFault
	stage       string        // fault
}

func (e simEvent) String() string {
	s := fmt.Sprintf("%6.2fs %-7s %s", e.at.Seconds(), e.kind, e.slot)
	switch e.kind {
	case "start":
		s += fmt.Sprintf(" commit=%v", e.commit)
	case "restart":
		s += fmt.Sprintf(" commit=%v reuseDir=%v", e.commit, e.reuseDir)
	case "pause":
		s += fmt.Sprintf(" for=%v atRelease=%v groupLag=%v untilEndTxn=%v", e.dur, e.atRelease, e.lag, e.untilEndTxn)
	case "fault":
		s += fmt.Sprintf(" %s on stage %s", e.fault, e.stage)
	}
	return s
}

// simSchedule is a whole random run.
type simSchedule struct {
	seed       uint64
	partitions int32
	ids        int
	produceFor time.Duration
	bursty     bool // input in bursts (1 s of every 2.5 s)
	events     []simEvent
}

func (sc *simSchedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d partitions, %d ids produced over %v (bursty: %v)\n", sc.seed, sc.partitions, sc.ids, sc.produceFor, sc.bursty)
	for _, e := range sc.events {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}

var (
	simIntervals = []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond, time.Second, 3 * time.Second, 6 * time.Second}
	simFaults    = []string{"endtxn-abortable", "offsets-rebalance", "offsets-generation", "produce-abortable", "lost-endtxn"}
	simSlots     = []string{"A", "B", "C", "D", "E", "F", "G", "H"}
)

// randomSchedule derives a schedule from seed. It keeps a model of each
// slot's state so that every event applies: at most 4 instances at once,
// at least one running one, nothing aimed at an instance while it is paused.
func randomSchedule(seed uint64) *simSchedule {
	rng := rand.New(rand.NewPCG(seed, seed^0x6d656d62))
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	span := ms(10000, 16000)
	sc := &simSchedule{seed: seed, partitions: []int32{4, 6}[rng.IntN(2)], produceFor: span + 2*time.Second}
	sc.ids = 60 * int(sc.produceFor/time.Second)
	sc.bursty = rng.IntN(5) < 3

	type slot struct {
		state  string // running, paused, left, killed
		commit time.Duration
		freeAt time.Duration
	}
	slots := map[string]*slot{}
	used := 0
	add := func(e simEvent) { sc.events = append(sc.events, e) }
	start := func(at time.Duration) {
		name := simSlots[used]
		used++
		c := simIntervals[rng.IntN(len(simIntervals))]
		slots[name] = &slot{state: "running", commit: c}
		add(simEvent{at: at, kind: "start", slot: name, commit: c})
	}
	active := func() (running []string, n int) {
		for _, name := range simSlots[:used] {
			switch slots[name].state {
			case "running":
				n++
				running = append(running, name)
			case "paused":
				n++
			}
		}
		return running, n
	}
	ready := func(at time.Duration, running []string) []string {
		var out []string
		for _, name := range running {
			if slots[name].freeAt <= at {
				out = append(out, name)
			}
		}
		return out
	}
	// The second first instance starts a little later: instances starting
	// at the same instant on a fresh application race to create its
	// topics, which directed/simultaneous-start covers.
	at := time.Duration(0)
	start(0)
	if rng.IntN(2) == 0 {
		at = ms(500, 1500)
		start(at)
	}
	kills, pauses := 0, 0
	for {
		at += ms(700, 2500)
		if at > span {
			break
		}
		for _, name := range simSlots[:used] {
			if s := slots[name]; s.state == "paused" && s.freeAt <= at {
				s.state = "running"
			}
		}
		running, n := active()
		rd := ready(at, running)
		var stopped []string
		for _, name := range simSlots[:used] {
			if st := slots[name].state; st == "left" || st == "killed" {
				stopped = append(stopped, name)
			}
		}
		long := false
		for _, name := range running {
			long = long || slots[name].commit >= 3*time.Second
		}
		switch r := rng.IntN(100); {
		case r < 15 && n <= 2 && long && at >= 5*time.Second && used+2 <= len(simSlots):
			// Two joins inside one transaction of a long-interval instance
			// that runs steadily (its first commits take up to two of its
			// intervals, one per stage).
			start(at)
			at += ms(1000, 2000)
			start(at)
		case r < 35 && n < 4:
			if len(stopped) > 0 && (rng.IntN(2) == 0 || used == len(simSlots)) {
				name := stopped[rng.IntN(len(stopped))]
				s := slots[name]
				s.state, s.commit = "running", simIntervals[rng.IntN(len(simIntervals))]
				add(simEvent{at: at, kind: "restart", slot: name, commit: s.commit, reuseDir: rng.IntN(2) == 0})
			} else if used < len(simSlots) {
				start(at)
			}
		case r < 50 && len(rd) >= 2:
			name := rd[rng.IntN(len(rd))]
			slots[name].state = "left"
			add(simEvent{at: at, kind: "leave", slot: name})
		case r < 60 && len(rd) >= 2 && kills < 2:
			kills++
			name := rd[rng.IntN(len(rd))]
			slots[name].state = "killed"
			add(simEvent{at: at, kind: "kill", slot: name})
		case r < 78 && len(rd) >= 2 && pauses < 2:
			pauses++
			name := rd[rng.IntN(len(rd))]
			e := simEvent{at: at, kind: "pause", slot: name, dur: ms(7000, 8800), atRelease: rng.IntN(2) == 0,
				lag: ms(0, 1500), untilEndTxn: rng.IntN(2) == 0}
			if rng.IntN(4) == 0 {
				e.dur = ms(1000, 3000) // a hiccup below the session timeout
			}
			slots[name].state = "paused"
			slots[name].freeAt = at + e.dur + 3*time.Second
			add(e)
		case len(rd) >= 1:
			name := rd[rng.IntN(len(rd))]
			stage := simIngest
			if rng.IntN(3) > 0 {
				stage = simTally
			}
			add(simEvent{at: at, kind: "fault", slot: name, fault: simFaults[rng.IntN(len(simFaults))], stage: stage})
		}
	}
	return sc
}

// runSchedule runs a schedule, drains, stops everything and checks.
func runSchedule(t *testing.T, sc *simSchedule) {
	s := newSim(t, sc.seed, sc.partitions)
	t.Logf("schedule %s", sc)
	s.produceOver(0, sc.ids, sc.produceFor, sc.bursty, simWords(sc.seed, 12))
	cur := map[string]*simInstance{}
	for _, e := range sc.events {
		time.Sleep(time.Until(s.start.Add(e.at)))
		s.note("event: %s", strings.TrimSpace(e.String()[strings.Index(e.String(), "s ")+2:]))
		in := cur[e.slot]
		switch e.kind {
		case "start":
			cur[e.slot] = s.startInstance(e.slot, e.commit, nil, false)
		case "restart":
			reuse := e.reuseDir
			if reuse {
				select {
				case <-in.done:
				case <-time.After(20 * time.Second):
					s.note("%s: still not stopped; restarting with a fresh state directory", in.name)
					reuse = false
				}
			}
			cur[e.slot] = s.startInstance(nextName(in.name), e.commit, in, reuse)
		case "leave":
			in.leave()
		case "kill":
			in.kill()
		case "pause":
			in.pause(e.dur, e.atRelease, e.lag, e.untilEndTxn)
		case "fault":
			in.brokerFault(e.fault, e.stage)
		}
	}
	s.settle(sc)
	s.drain(drainTimeout)
	s.stopAll(time.Minute)
	s.check()
}

// drainTimeout bounds the time the survivors get to process everything
// after the last event (pauses that still run, a session timeout, a
// transaction timeout, restores).
const drainTimeout = 90 * time.Second

// settle waits for pauses to end and makes sure an instance runs.
func (s *sim) settle(sc *simSchedule) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		paused := false
		for _, in := range s.live() {
			paused = paused || in.paused.Load()
		}
		if !paused {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(s.live()) == 0 {
		s.startInstance("Z", 100*time.Millisecond, nil, false)
	}
}

func nextName(name string) string {
	base, n := name, 1
	if i := strings.IndexByte(name, '#'); i >= 0 {
		base = name[:i]
		fmt.Sscan(name[i+1:], &n)
	}
	return fmt.Sprintf("%s#%d", base, n+1)
}

// simWords returns the word of each id: one of vocab, from the seed.
func simWords(seed uint64, vocab int) func(int) string {
	return func(i int) string {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%d", seed, i)
		return fmt.Sprintf("w%d", h.Sum64()%uint64(vocab))
	}
}

// simSecondRevoke: A runs alone with a 6 s commit interval; right after one
// of its tally transactions begins, B joins and takes some of A's tasks,
// and 1.5 s later C joins and takes one more, inside the same A
// transaction. C processes and commits its task; then C and B leave, and
// every task returns to A. A must have dropped the task it lost in the
// second rebalance (it was told nothing about it) and restore it from the
// changelog; kept stale, its counts repeat (1 2 3 3) and its buffered items
// are released twice.
func simSecondRevoke(t *testing.T) {
	const seed = 101
	s := newSim(t, seed, 6)
	s.produceOver(0, 1500, 24*time.Second, false, simWords(seed, 12))
	a := s.startInstance("A", 6*time.Second, nil, false)
	// Wait for A's first tally commit, then for the next: a transaction
	// has just begun (records keep arriving).
	s.waitFor(40*time.Second, "A's first tally commit", func() bool { return a.metrics()[simTally].Commits >= 1 })
	c0 := a.metrics()[simTally].Commits
	s.waitFor(20*time.Second, "A's next tally commit", func() bool { return a.metrics()[simTally].Commits > c0 })
	s.note("A's tally transaction %d began", c0+1)
	b := s.startInstance("B", 100*time.Millisecond, nil, false)
	time.Sleep(1500 * time.Millisecond)
	c := s.startInstance("C", 100*time.Millisecond, nil, false)
	time.Sleep(6 * time.Second)
	c.leave()
	time.Sleep(2 * time.Second)
	b.leave()
	s.drain(drainTimeout)
	s.stopAll(time.Minute)
	s.check()
}

// simZombieTimer: A and B run; a burst of ids arrives after the input was
// quiet, and A freezes inside the release of its buffered items in a cycle
// that consumed nothing (no transaction open), for 8.5 s: past the session
// timeout. B takes over A's tasks, restores their buffers and releases
// them. A resumes (8.5 s); the network to the group coordinator heals only after
// A's EndTxn went through. A's release (a timer-only transaction: no
// TxnOffsetCommit, so no generation check) must not commit: each id once.
func simZombieTimer(t *testing.T) {
	const seed = 202
	s := newSim(t, seed, 4)
	words := simWords(seed, 12)
	s.wall = 2 * time.Second
	a := s.startInstance("A", 100*time.Millisecond, nil, false)
	cl := s.producer()
	if err := s.produce(cl, 0, 100, words); err != nil {
		t.Fatal(err)
	}
	s.waitFor(30*time.Second, "A's first commit", func() bool { return a.metrics()[simIngest].Commits >= 1 })
	s.startInstance("B", 100*time.Millisecond, nil, false)
	s.drain(drainTimeout)
	// The burst right after a release instant, so that it is processed
	// (and committed) well before the next one.
	next := time.Now().Truncate(s.wall).Add(s.wall + 200*time.Millisecond)
	time.Sleep(time.Until(next))
	if err := s.produce(cl, 100, 200, words); err != nil {
		t.Fatal(err)
	}
	s.note("burst of 200 ids produced")
	a.pause(8500*time.Millisecond, true, 3*time.Second, true)
	time.Sleep(13 * time.Second)
	s.drain(drainTimeout)
	s.stopAll(time.Minute)
	s.check()
}

// simJoinsNoRestart: A and B run; C joins, D joins, B leaves, C leaves,
// with records flowing. No fault: no stage may restart, and every effect
// happens once.
func simJoinsNoRestart(t *testing.T) {
	const seed = 303
	s := newSim(t, seed, 6)
	s.produceOver(0, 1200, 16*time.Second, false, simWords(seed, 12))
	a := s.startInstance("A", 100*time.Millisecond, nil, false)
	s.waitFor(30*time.Second, "A's first commit", func() bool { return a.metrics()[simIngest].Commits >= 1 })
	b := s.startInstance("B", 300*time.Millisecond, nil, false)
	time.Sleep(3 * time.Second)
	c := s.startInstance("C", 100*time.Millisecond, nil, false)
	time.Sleep(3 * time.Second)
	s.startInstance("D", time.Second, nil, false)
	time.Sleep(3 * time.Second)
	b.leave()
	time.Sleep(3 * time.Second)
	c.leave()
	s.drain(drainTimeout)
	s.stopAll(time.Minute)
	s.check()
}

// waitFor polls cond every 20 ms; it dumps and fails after timeout.
func (s *sim) waitFor(timeout time.Duration, what string, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s.dump(fmt.Sprintf("waited %v for %s", timeout, what))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// simSimultaneousStart: three instances of a fresh application start at
// the same instant (as a deployment does): every one must run (they race to
// create the application's topics), and every effect happens once.
func simSimultaneousStart(t *testing.T) {
	const seed = 404
	s := newSim(t, seed, 4)
	s.produceOver(0, 300, 3*time.Second, false, simWords(seed, 12))
	for _, name := range []string{"A", "B", "C"} {
		s.startInstance(name, 100*time.Millisecond, nil, false)
	}
	s.drain(drainTimeout)
	s.stopAll(time.Minute)
	s.check()
}
