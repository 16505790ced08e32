package main

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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
	crashtest.Run(t, "wordcount", []int{1, 2, 3}, crashWordcount)
}

func crashWordcount(t *testing.T, bin string, instances int, seed uint64) {
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "crash")
	input, output := app+"-lines", app+"-counts"
	crashtest.CreateTopics(t, brokers, 4, nil, input, output)

	// A backlog, then a steady stream of input for as long as the kills go
	// on, so that every kill lands while the instances have work in flight.
	gen := newLineGen(rng.Uint64(), 400)
	produce(t, brokers, input, gen.next(15000))
	h := newHarness(t, bin, brokers, app, input, output)
	defer h.KillAll()
	stopInput := h.steadyInput(gen, 100, 50*time.Millisecond)

	c := h.Chaos(rng, h.StartAll(instances), 12)
	stopInput()
	want, total := gen.counts()
	seen := h.WaitCount(output, total, 4*time.Minute)
	h.StopAll()
	t.Logf("%d instance(s): %v; %d lines, %d words", instances, c, gen.lines, total)
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the kills", seen, total)
	}
	recs := testbroker.ReadCommitted(t, brokers, output)
	crashtest.CheckRunningCounts(t, recs, want)
	compareWithKcat(t, brokers, output, recs)
	c.CheckMidTxn(t, seed)
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

// harness runs wordcount instances on the topics input and output.
type harness struct {
	*crashtest.Harness
	input, output string
}

func newHarness(t *testing.T, bin string, brokers []string, app, input, output string) *harness {
	h := &harness{Harness: crashtest.New(t, bin, brokers, app), input: input, output: output}
	h.Args = []string{"-input", input, "-output", output}
	if os.Getenv("SLUICE_CRASH_VERBOSE") != "" {
		h.Args = append(h.Args, "-v") // info lines: tasks assigned and revoked, franz-go's transaction steps
	}
	return h
}

// steadyInput produces n lines every interval until the returned function
// is called; it returns once the producer stopped.
func (h *harness) steadyInput(gen *lineGen, n int, interval time.Duration) (stop func()) {
	return crashtest.SteadyInput(interval, func() { produce(h.T, h.Brokers, h.input, gen.next(n)) })
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
	recs := make([]*kgo.Record, len(lines))
	for i, l := range lines {
		recs[i] = &kgo.Record{Value: []byte(l)}
	}
	crashtest.Produce(t, brokers, topic, recs)
}
