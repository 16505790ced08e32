package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink/sqlsink"
	"github.com/sluicehq/sluice/sink/sqlsink/sqlsinktest"
)

// TestCrashToSQL runs the tosql binary as subprocesses against a broker and
// a database that outlive them, with a backlog and a steady stream of
// payments, and:
//
//   - kills instances with SIGKILL, each kill aimed inside a database write
//     (the binary traces its writes with SLUICE_TEST_TRACE), for part of the
//     run with two instances sharing the partitions, restarting each;
//   - makes a zombie: a third instance stops itself (SIGSTOP) just before a
//     write, holding a batch; the test waits past its session timeout until
//     the other instance has moved every partition's stored offset on, then
//     resumes it (SIGCONT): its write must be fenced by the compare-and-set.
//
// Then it checks that the balances hold every payment exactly once, that
// the ledger (primary key topic, partition, offset) holds one row for every
// input offset and no other, and that the stored offsets are the topic's
// ends. It runs on SQLite (two processes sharing the file) and on PostgreSQL
// (skipped where PostgreSQL is not installed). The seed is printed;
// SLUICE_CRASH_SEED=N reruns it.
func TestCrashToSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := crashtest.Seed(t)
	bin := crashtest.Build(t, "tosql")
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "balances.sqlite")
		crashTest(t, seed, bin, []string{"-db", path}, func() (*sql.DB, error) { return sqlsink.OpenSQLite(path) }, 8)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := sqlsinktest.Postgres(t)
		crashTest(t, seed, bin, []string{"-postgres", dsn}, func() (*sql.DB, error) { return sql.Open("pgx", dsn) }, 6)
	})
}

func crashTest(t *testing.T, seed uint64, bin string, dbArgs []string, open func() (*sql.DB, error), minKills int) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "tosql")
	input := app + "-payments"
	crashtest.CreateTopics(t, brokers, 4, nil, input)
	db, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	gen := newPaymentGen(rng.Uint64(), 60)
	crashtest.Produce(t, brokers, input, gen.next(5000))
	h := newHarness(t, bin, brokers, app, input, dbArgs)
	defer h.KillAll()
	stopInput := crashtest.SteadyInput(50*time.Millisecond, func() { crashtest.Produce(t, brokers, input, gen.next(100)) })
	defer stopInput()

	// Kills aimed at writes.
	kills, midWrite := 0, 0
	h.Start("i1")
	for kills < minKills {
		two := kills >= 2 && kills < 6
		if two && h.Proc("i2") == nil {
			h.Start("i2")
		}
		if !two && h.Proc("i2") != nil {
			h.kill("i2", 0) // a kill too, without restart
		}
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		victim := "i1"
		if two && rng.IntN(2) == 0 {
			victim = "i2"
		}
		if h.kill(victim, time.Second) {
			midWrite++
		}
		kills++
		h.Start(victim)
	}

	// The zombie: i3 joins, stops itself before its third write, holding a
	// batch, and is resumed once i1 has moved every partition on.
	h.Start("i3", "SLUICE_TEST_STOP_BEFORE_WRITE=3")
	h.waitStopped("i3", time.Minute)
	before := storedOffsets(t, db, app+"-sink", input)
	t.Logf("zombie i3 stopped holding a batch; stored offsets %v", before)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		now := storedOffsets(t, db, app+"-sink", input)
		moved := len(now) == 4
		for p, o := range now {
			moved = moved && o > before[p]
		}
		if moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("i1 did not take over the zombie's partitions: stored offsets %v, were %v; log of i1: %s", now, before, h.LogTail("i1"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.Proc("i3").Signal(syscall.SIGCONT)
	zombieFenced := h.waitLog("i3", "rejected the batch's offsets", 30*time.Second)
	if !zombieFenced {
		t.Errorf("the zombie's write was not fenced; log of i3: %s", h.LogTail("i3"))
	}

	stopInput()
	ends := endOffsets(t, brokers, input)
	deadline = time.Now().Add(3 * time.Minute)
	for {
		now := storedOffsets(t, db, app+"-sink", input)
		done := true
		for p, e := range ends {
			done = done && now[p] >= e
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stored offsets %v did not reach the ends %v", now, ends)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range []string{"i3", "i1"} {
		h.Stop(n)
	}
	want, count := gen.expected()
	t.Logf("%d kills, %d landed mid-write; zombie fenced: %v; %d payments", kills, midWrite, zombieFenced, count)

	checkBalances(t, db, want)
	checkLedger(t, db, input, ends)
	if got := storedOffsets(t, db, app+"-sink", input); fmt.Sprint(got) != fmt.Sprint(ends) {
		t.Errorf("stored offsets %v, want the ends %v", got, ends)
	}
	if midWrite == 0 {
		t.Errorf("no kill landed inside a write: the test proved nothing (seed %d)", seed)
	}
}

// checkBalances compares every account's total and number of updates with
// the payments produced.
func checkBalances(t *testing.T, db *sql.DB, want map[string][2]int64) {
	t.Helper()
	rows, err := readBalances(context.Background(), db, "balances")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, b := range rows {
		got[b.account] = [2]int64{b.total, b.updates}
	}
	bad := 0
	for a, w := range want {
		if got[a] != w {
			bad++
			if bad <= 10 {
				t.Errorf("account %s: total %d from %d updates, want %d from %d", a, got[a][0], got[a][1], w[0], w[1])
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d accounts, want %d", len(got), len(want))
	}
	if bad > 0 {
		t.Errorf("exactly-once violated: %d of %d accounts wrong", bad, len(want))
	}
}

// checkLedger checks that the ledger holds exactly the offsets 0..end-1 of
// every partition: the primary key rules out duplicates, so a count of end
// with minimum 0 and maximum end-1 means each offset once.
func checkLedger(t *testing.T, db *sql.DB, topic string, ends map[int32]int64) {
	t.Helper()
	rows, err := db.Query(`SELECT partition_id, COUNT(*), MIN(record_offset), MAX(record_offset) FROM balances_ledger WHERE topic = '` + topic + `' GROUP BY partition_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var p int32
		var n, lo, hi int64
		if err := rows.Scan(&p, &n, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		seen++
		if e := ends[p]; n != e || lo != 0 || hi != e-1 {
			t.Errorf("ledger partition %d: %d rows, offsets %d..%d; want %d rows, 0..%d", p, n, lo, hi, e, e-1)
		}
	}
	if seen != len(ends) {
		t.Errorf("ledger has %d partitions, want %d", seen, len(ends))
	}
}

func storedOffsets(t *testing.T, db *sql.DB, group, topic string) map[int32]int64 {
	t.Helper()
	rows, err := db.Query(`SELECT partition_id, next_offset FROM sluice_offsets WHERE consumer_group = '` + group + `' AND topic = '` + topic + `'`)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") || strings.Contains(err.Error(), "does not exist") {
			return map[int32]int64{}
		}
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var p int32
		var o int64
		if err := rows.Scan(&p, &o); err != nil {
			t.Fatal(err)
		}
		out[p] = o
	}
	return out
}

func endOffsets(t *testing.T, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	ls, err := testbroker.Admin(t, brokers).ListEndOffsets(context.Background(), topic)
	if err == nil {
		err = ls.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, o := range ls[topic] {
		out[p] = o.Offset
	}
	return out
}

// harness runs tosql instances on the topic input, writing to the database
// of dbArgs, with their writes traced (SLUICE_TEST_TRACE).
type harness struct {
	*crashtest.Harness
}

func newHarness(t *testing.T, bin string, brokers []string, app, input string, dbArgs []string) *harness {
	h := &harness{crashtest.New(t, bin, brokers, app)}
	h.Flags = func(name string) []string {
		return append([]string{
			"-brokers", strings.Join(brokers, ","),
			"-app", app, "-input", input, "-instance-id", name,
			"-commit-interval", "100ms", "-max-records", "500", "-ledger", "-v",
		}, dbArgs...)
	}
	// The test profile: short timeouts so that instances recover fast. A
	// rebalance waits for a batch's every write attempt: 100ms + 3 × 8s +
	// 600ms must fit (sink.New checks it).
	h.Profile = []string{"-session-timeout=6s", "-heartbeat-interval=500ms", "-rebalance-timeout=30s", "-write-timeout=8s"}
	h.Env = []string{"SLUICE_TEST_TRACE=1"}
	// A fenced zombie may end by itself, and cleanly.
	h.ExitBeforeStopOK = true
	return h
}

// kill sends SIGKILL and reports whether the instance was inside a write
// then. It waits up to aim for a write to begin, so that the kill lands
// inside one (at a random point of it), and judges afterwards from the
// trace: the last trace line of a process killed inside a write is its
// "write-begin". An instance that exited by itself fails the test.
func (h *harness) kill(name string, aim time.Duration) bool {
	h.T.Helper()
	p := h.Proc(name)
	for end := time.Now().Add(aim); time.Now().Before(end) && !h.inWrite(name); {
		time.Sleep(2 * time.Millisecond)
	}
	if p.Exited() {
		h.KillNow(name)
		h.T.Errorf("instance %s had exited by itself (%v); log: %s", name, p.Err(), h.LogTail(name))
		return false
	}
	h.KillNow(name)
	in := h.inWrite(name)
	// Mark the kill in the log, so the next instance's trace starts afresh.
	if f, err := os.OpenFile(h.LogPath(name), os.O_APPEND|os.O_WRONLY, 0); err == nil {
		fmt.Fprintf(f, "killed (inside a write: %v)\n", in)
		f.Close()
	}
	return in
}

// inWrite reports whether the last trace line in name's log is a
// write-begin.
func (h *harness) inWrite(name string) bool {
	f, err := os.Open(h.LogPath(name))
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false
	}
	off := max(st.Size()-4096, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return false
	}
	b := bytes.LastIndex(buf, []byte("write-begin "))
	e := bytes.LastIndex(buf, []byte("write-end "))
	k := bytes.LastIndex(buf, []byte("killed ("))
	return b >= 0 && b > e && b > k
}

// waitStopped waits until the process is stopped (SIGSTOP).
func (h *harness) waitStopped(name string, timeout time.Duration) {
	h.T.Helper()
	p := h.Proc(name)
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err == nil {
			if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
				return
			}
		}
		if p.Exited() {
			h.T.Fatalf("instance %s exited before stopping itself; log: %s", name, h.LogTail(name))
		}
		if time.Now().After(deadline) {
			h.T.Fatalf("instance %s did not stop itself within %v; log: %s", name, timeout, h.LogTail(name))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) waitLog(name, s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(h.LogPath(name))
		if bytes.Contains(b, []byte(s)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// paymentGen makes random payments and sums them per account.
type paymentGen struct {
	mu       sync.Mutex
	rng      *rand.Rand
	accounts int
	want     map[string][2]int64 // total, updates
	n        int
}

func newPaymentGen(seed uint64, accounts int) *paymentGen {
	return &paymentGen{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), accounts: accounts, want: map[string][2]int64{}}
}

func (g *paymentGen) next(n int) []*kgo.Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		a := fmt.Sprintf("acct%d", g.rng.IntN(g.accounts))
		amount := int64(g.rng.IntN(151) - 50)
		w := g.want[a]
		g.want[a] = [2]int64{w[0] + amount, w[1] + 1}
		recs[i] = &kgo.Record{Key: []byte(a), Value: []byte(strconv.FormatInt(amount, 10))}
	}
	g.n += n
	return recs
}

func (g *paymentGen) expected() (map[string][2]int64, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.want, g.n
}
