package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testbroker"
)

// TestCrashWordcount runs the wordcount binary as subprocesses against a
// broker that outlives them and kills them with SIGKILL at random moments
// while a backlog of input is being processed (sometimes also deleting their
// state directory), restarts them, and checks that a read_committed reader
// sees, for every word, exactly the counts 1, 2, ..., n. For part of the test
// two instances run at once, so kills also land in rebalances. The seed is
// printed; SLUICE_CRASH_SEED=N reruns it.
func TestCrashWordcount(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SLUICE_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SLUICE_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (rerun with SLUICE_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))

	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 4, nil)
	testbroker.CreateTopic(t, brokers, output, 4, nil)
	bin := buildBinary(t)

	// A backlog, then a steady stream of input for as long as the kills go
	// on, so that every kill lands while the instances have work in flight.
	gen := newLineGen(rng.Uint64(), 400)
	produce(t, brokers, input, gen.next(20000))
	h := &harness{t: t, bin: bin, brokers: brokers, app: app, input: input, output: output, dir: t.TempDir(), procs: map[string]*exec.Cmd{}}
	defer h.killAll()
	stopInput := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for {
			select {
			case <-stopInput:
				return
			case <-time.After(50 * time.Millisecond):
			}
			produce(t, brokers, input, gen.next(150))
		}
	}()

	const minKills = 12
	kills, midTxn, wiped := 0, 0, 0
	h.start("i1")
	for kills < minKills {
		two := kills >= 4 && kills < 9
		if two && h.procs["i2"] == nil {
			h.start("i2")
		}
		if !two && h.procs["i2"] != nil {
			h.kill("i2", 0) // a kill too, without restart
		}
		time.Sleep(time.Duration(300+rng.IntN(2200)) * time.Millisecond)
		victim := "i1"
		if two && rng.IntN(2) == 0 {
			victim = "i2"
		}
		if h.kill(victim, 500*time.Millisecond) {
			midTxn++
		}
		kills++
		if rng.IntN(4) == 0 {
			os.RemoveAll(h.stateDir(victim))
			wiped++
		}
		h.start(victim)
	}
	close(stopInput)
	<-produced
	want, total := gen.counts()
	if h.procs["i2"] != nil {
		h.stop("i2")
	}
	seen := waitCount(t, brokers, output, total, 4*time.Minute)
	h.stop("i1")
	t.Logf("%d kills, %d landed mid-transaction, %d state directories wiped; %d lines, %d words", kills, midTxn, wiped, gen.lines, total)
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the kills", seen, total)
	}
	checkCounts(t, testbroker.ReadCommitted(t, brokers, output), want)
	if midTxn == 0 {
		t.Errorf("no kill landed while a transaction was open: the test proved nothing (seed %d)", seed)
	}
}

type harness struct {
	t                       *testing.T
	bin                     string
	brokers                 []string
	app, input, output, dir string
	procs                   map[string]*exec.Cmd
}

func (h *harness) stateDir(name string) string { return filepath.Join(h.dir, "state-"+name) }

func (h *harness) start(name string) {
	h.t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(h.bin,
		"-brokers", strings.Join(h.brokers, ","),
		"-app", h.app, "-input", h.input, "-output", h.output,
		"-state-dir", h.stateDir(name), "-instance-id", name,
		"-commit-interval", "100ms", "-v")
	cmd.Env = append(os.Environ(), "SLUICE_TEST_TIMEOUTS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	logf.Close()
	h.procs[name] = cmd
}

// kill sends SIGKILL and reports whether one of the instance's transactions
// was open at that moment. It waits up to aim for a transaction to be open,
// so that the kill lands inside one (at a random point of it).
func (h *harness) kill(name string, aim time.Duration) bool {
	cmd := h.procs[name]
	open := h.openTransaction(name)
	for end := time.Now().Add(aim); !open && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		open = h.openTransaction(name)
	}
	cmd.Process.Kill()
	cmd.Wait()
	delete(h.procs, name)
	return open
}

func (h *harness) openTransaction(name string) bool {
	adm := testbroker.Admin(h.t, h.brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	txns, err := adm.DescribeTransactions(ctx)
	if err != nil && len(txns) == 0 {
		h.t.Logf("describing transactions: %v", err)
		return false
	}
	for id, d := range txns {
		if strings.HasPrefix(id, h.app+"-") && strings.HasSuffix(id, "-"+name) {
			switch d.State {
			case "Ongoing", "PrepareCommit", "PrepareAbort":
				return true
			}
		}
	}
	return false
}

// stop sends SIGTERM and expects a clean exit.
func (h *harness) stop(name string) {
	h.t.Helper()
	cmd := h.procs[name]
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			h.t.Errorf("instance %s exited with %v after SIGTERM; log: %s", name, err, h.logTail(name))
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		h.t.Errorf("instance %s did not exit within 60s of SIGTERM; log: %s", name, h.logTail(name))
	}
	delete(h.procs, name)
}

func (h *harness) killAll() {
	for name := range h.procs {
		h.kill(name, 0)
	}
	if h.t.Failed() {
		for _, n := range []string{"i1", "i2"} {
			h.t.Logf("log of %s: %s", n, h.logTail(n))
		}
	}
}

func (h *harness) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wordcount")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// lineGen makes random lines of words and counts the words it made.
type lineGen struct {
	rng   *rand.Rand
	vocab int
	mu    sync.Mutex
	want  map[string]int
	total int
	lines int
}

func newLineGen(seed uint64, vocab int) *lineGen {
	return &lineGen{rng: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), vocab: vocab, want: map[string]int{}}
}

func (g *lineGen) next(n int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	lines := make([]string, n)
	for i := range lines {
		k := 1 + g.rng.IntN(8)
		ws := make([]string, k)
		for j := range ws {
			ws[j] = fmt.Sprintf("w%d", g.rng.IntN(g.vocab))
			g.want[ws[j]]++
		}
		g.total += k
		lines[i] = strings.Join(ws, " ")
	}
	g.lines += n
	return lines
}

func (g *lineGen) counts() (map[string]int, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.want, g.total
}

func produce(t testing.TB, brokers []string, topic string, lines []string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Value: []byte(l)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Errorf("producing input: %v", err)
	}
}

func waitCount(t testing.TB, brokers []string, topic string, n int, timeout time.Duration) int {
	cl := testbroker.NewClient(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n && ctx.Err() == nil {
		seen += cl.PollFetches(ctx).NumRecords()
	}
	return seen
}

// checkCounts asserts that for every word the output values are exactly
// 1, 2, ..., n, and n is the word's count in the input.
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
			t.Errorf("word %s: count %d follows %d (partition %d, offset %d)", w, v, last[w], r.Partition, r.Offset)
		}
		last[w] = v
	}
	missing := 0
	for w, n := range want {
		if last[w] != n {
			missing++
		}
	}
	if dups+gaps+missing > 0 {
		t.Fatalf("exactly-once violated: %d duplicates, %d gaps, %d words with a wrong final count, in %d records", dups, gaps, missing, len(recs))
	}
}
