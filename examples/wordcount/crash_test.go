package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
// (each kill aimed at an open transaction of the victim; sometimes also
// deleting its state directory) while a backlog and then a steady stream of
// input are processed, restarts them, and checks that a read_committed reader
// sees, for every word, exactly the counts 1, 2, ..., n. It has one variant
// per number of instances (1, 2, 3); with several instances, kills land in
// rebalances, and once per variant the victim stays down past the session
// timeout, so that the others take its partitions over and give them back.
// The output is also read with kcat, an independent client, which must see
// the same records. The seed is printed; SLUICE_CRASH_SEED=N reruns it.
func TestCrashWordcount(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := crashSeed(t)
	bin := buildBinary(t)
	for _, n := range []int{1, 2, 3} {
		name := fmt.Sprintf("%d instances", n)
		if n == 1 {
			name = "1 instance"
		}
		t.Run(name, func(t *testing.T) {
			crashWordcount(t, bin, n, seed+uint64(n))
		})
	}
}

// crashSeed returns SLUICE_CRASH_SEED or a seed from the time, and logs it.
func crashSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SLUICE_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SLUICE_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (rerun with SLUICE_CRASH_SEED=%d)", seed, seed)
	return seed
}

func crashWordcount(t *testing.T, bin string, instances int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 4, nil)
	testbroker.CreateTopic(t, brokers, output, 4, nil)

	// A backlog, then a steady stream of input for as long as the kills go
	// on, so that every kill lands while the instances have work in flight.
	gen := newLineGen(rng.Uint64(), 400)
	produce(t, brokers, input, gen.next(15000))
	h := newHarness(t, bin, brokers, app, input, output)
	defer h.killAll()
	stopInput := h.steadyInput(gen, 100, 50*time.Millisecond)

	const kills = 12
	midTxn, wiped, outages := 0, 0, 0
	names := make([]string, instances)
	for i := range names {
		names[i] = fmt.Sprintf("i%d", i+1)
		h.start(names[i])
	}
	downUntil := map[string]time.Time{}
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(300+rng.IntN(2000)) * time.Millisecond)
		for name, until := range downUntil {
			if time.Now().After(until) {
				h.start(name)
				delete(downUntil, name)
			}
		}
		var running []string
		for _, n := range names {
			if h.procs[n] != nil {
				running = append(running, n)
			}
		}
		victim := running[rng.IntN(len(running))]
		if h.kill(victim, 500*time.Millisecond) {
			midTxn++
		}
		if rng.IntN(4) == 0 {
			os.RemoveAll(h.stateDir(victim))
			wiped++
		}
		if instances > 1 && k == kills/2 {
			// Down past the session timeout (6 s): the group
			// rebalances its partitions to the others, and back when
			// it returns, while the kills go on.
			downUntil[victim] = time.Now().Add(8 * time.Second)
			outages++
			continue
		}
		h.start(victim)
	}
	for name := range downUntil {
		h.start(name)
	}
	stopInput()
	want, total := gen.counts()
	seen := h.waitCount(total, 4*time.Minute)
	for _, n := range names {
		h.stop(n)
	}
	t.Logf("%d instance(s): %d kills, %d landed mid-transaction, %d state directories wiped, %d outages past the session timeout; %d lines, %d words",
		instances, kills, midTxn, wiped, outages, gen.lines, total)
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the kills", seen, total)
	}
	recs := testbroker.ReadCommitted(t, brokers, output)
	checkCounts(t, recs, want)
	compareWithKcat(t, brokers, output, recs)
	if midTxn == 0 {
		t.Errorf("no kill landed while a transaction was open: the test proved nothing (seed %d)", seed)
	}
}

// compareWithKcat reads topic with kcat (librdkafka, read_committed) and
// checks that it sees exactly the records of recs (sorted by partition and
// offset, as testbroker.ReadCommitted returns them). It skips the comparison,
// with a log line, when kcat is not installed.
func compareWithKcat(t *testing.T, brokers []string, topic string, recs []*kgo.Record) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Logf("kcat is not installed: output NOT checked with an independent reader (install the Debian package kcat)")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-b", strings.Join(brokers, ","), "-C", "-t", topic,
		"-o", "beginning", "-e", "-q", "-X", "isolation.level=read_committed",
		"-f", "%p\t%o\t%k\t%s\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, stderr.String())
	}
	type rec struct {
		p    int32
		o    int64
		k, v string
	}
	var got []rec
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, "\t", 4)
		if len(f) != 4 {
			t.Fatalf("kcat printed %q", line)
		}
		p, _ := strconv.Atoi(f[0])
		o, _ := strconv.ParseInt(f[1], 10, 64)
		got = append(got, rec{int32(p), o, f[2], f[3]})
	}
	slices.SortFunc(got, func(a, b rec) int {
		if a.p != b.p {
			return cmp.Compare(a.p, b.p)
		}
		return cmp.Compare(a.o, b.o)
	})
	diffs := 0
	for i := 0; i < max(len(got), len(recs)); i++ {
		var g, w rec
		if i < len(got) {
			g = got[i]
		}
		if i < len(recs) {
			r := recs[i]
			w = rec{r.Partition, r.Offset, string(r.Key), string(r.Value)}
		}
		if g != w {
			if diffs < 10 {
				t.Errorf("record %d: kcat read %+v, the Go read_committed reader %+v", i, g, w)
			}
			diffs++
		}
	}
	if diffs > 0 {
		t.Fatalf("kcat and the Go reader disagree on %d of %d/%d records", diffs, len(got), len(recs))
	}
	t.Logf("kcat (read_committed) read the same %d records as the Go reader", len(got))
}

type harness struct {
	t                       *testing.T
	bin                     string
	brokers                 []string
	app, input, output, dir string
	procs                   map[string]*proc
	started                 map[string]bool
	args                    []string // extra flags for every instance
}

func newHarness(t *testing.T, bin string, brokers []string, app, input, output string) *harness {
	return &harness{t: t, bin: bin, brokers: brokers, app: app, input: input, output: output,
		dir: t.TempDir(), procs: map[string]*proc{}, started: map[string]bool{}}
}

// steadyInput produces n lines every interval until the returned function
// is called; it returns once the producer stopped.
func (h *harness) steadyInput(gen *lineGen, n int, interval time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(interval):
			}
			produce(h.t, h.brokers, h.input, gen.next(n))
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}

func (h *harness) stateDir(name string) string { return filepath.Join(h.dir, "state-"+name) }

// proc is one running instance.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process exited
	err    error         // its exit status, once exited is closed
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

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
	cmd.Args = append(cmd.Args, h.args...)
	cmd.Env = append(os.Environ(), "SLUICE_TEST_TIMEOUTS=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	logf.Close()
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	h.procs[name] = p
	h.started[name] = true
}

// kill sends SIGKILL and reports whether one of the instance's transactions
// was open at that moment. It waits up to aim for a transaction to be open,
// so that the kill lands inside one (at a random point of it). An instance
// that exited by itself before the kill fails the test: instances must
// recover from every fault without help.
func (h *harness) kill(name string, aim time.Duration) bool {
	p := h.procs[name]
	open := h.openTransaction(name)
	for end := time.Now().Add(aim); !open && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
		open = h.openTransaction(name)
	}
	if p.hasExited() {
		h.t.Errorf("instance %s exited by itself (%v) before it was killed; log: %s", name, p.err, h.logTail(name))
	}
	p.cmd.Process.Kill()
	<-p.exited
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
	p := h.procs[name]
	if p.hasExited() {
		h.t.Errorf("instance %s exited by itself (%v) before it was stopped; log: %s", name, p.err, h.logTail(name))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			h.t.Errorf("instance %s exited with %v after SIGTERM; log: %s", name, p.err, h.logTail(name))
		}
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		h.t.Errorf("instance %s did not exit within 60s of SIGTERM; log: %s", name, h.logTail(name))
	}
	delete(h.procs, name)
}

func (h *harness) killAll() {
	for name, p := range h.procs {
		p.cmd.Process.Kill()
		<-p.exited
		delete(h.procs, name)
	}
	if h.t.Failed() {
		for n := range h.started {
			h.t.Logf("errors in the log of %s:\n%s", n, h.logErrors(n))
			h.t.Logf("log of %s: %s", n, h.logTail(n))
		}
	}
}

// logErrors returns the log's lines at level ERROR and its last lines that
// say why the processor stopped (at most 30).
func (h *harness) logErrors(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.dir, name+".log"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=ERROR") || strings.Contains(l, "processor stopped") || strings.HasPrefix(l, "wordcount:") {
			out = append(out, l)
		}
	}
	if len(out) > 30 {
		out = out[len(out)-30:]
	}
	return strings.Join(out, "\n")
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

// waitCount consumes the output with read_committed from its start until it
// has seen n records, timeout passed or every instance has exited, and
// returns how many records it saw.
func (h *harness) waitCount(n int, timeout time.Duration) int {
	return waitCountWhile(h.t, h.brokers, h.output, n, timeout, func() bool {
		for _, p := range h.procs {
			if !p.hasExited() {
				return true
			}
		}
		return len(h.procs) == 0
	})
}

// waitCountWhile is waitCount on any topic, giving up when alive returns
// false.
func waitCountWhile(t testing.TB, brokers []string, topic string, n int, timeout time.Duration, alive func() bool) int {
	cl := testbroker.NewClient(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n && ctx.Err() == nil && alive() {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		seen += cl.PollFetches(pctx).NumRecords()
		pcancel()
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
