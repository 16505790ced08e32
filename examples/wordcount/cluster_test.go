package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/cluster"
	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// The cluster fault tests run the word count with two instances on the
// replicated cluster of scripts/kafka (SLUICE_KAFKA_NODES=3: three nodes,
// replication factor 3, min.insync.replicas 2; `make test-cluster`) and
// fail one of its nodes while the instances work through a backlog and a
// steady stream of input: kill -9 of the leader of an input partition, of
// the node that coordinates most of the application's transactions (while
// one is open), of the node that coordinates most of its consumer groups,
// and a rolling restart of all three nodes with instance kills in between.
// After every fault the killed node comes back and the test waits for
// every partition to be in sync again. Each test checks that a
// read_committed reader (and kcat) sees, for every word, exactly the counts
// 1, 2, ..., n; it reports the run's time and, for every fault, how long the
// application committed nothing (cluster.CommitWatch): the stall. There is
// no bound on the stall in the test (timing on a loaded machine is not a
// pass/fail matter); docs/guarantees.md records the numbers.
//
// They skip unless the cluster runs (cluster.Open).

// TestCrashClusterLeaderKill kills -9 the node that leads partition 0 of
// the input topic.
func TestCrashClusterLeaderKill(t *testing.T) {
	r := startClusterRun(t)
	defer r.h.KillAll()
	r.fault("kill -9 of the leader of input partition 0", r.c.Leader(r.h.input, 0), true)
	r.finish()
}

// TestCrashClusterTxnCoordinatorKill kills -9, while one of the
// application's transactions is open, the node that coordinates most of
// its transactional ids (kadm FindTxnCoordinators).
func TestCrashClusterTxnCoordinatorKill(t *testing.T) {
	r := startClusterRun(t)
	defer r.h.KillAll()
	ids := r.txnIDs()
	coords := r.c.TxnCoordinators(ids...)
	node := cluster.MostCommon(coords)
	t.Logf("transaction coordinators: %v", coords)
	// Aim at an open transaction of an instance coordinated there.
	open := ""
	for end := time.Now().Add(2 * time.Second); open == "" && time.Now().Before(end); {
		for _, n := range r.names {
			if r.h.OpenTransaction(n) {
				open = n
				break
			}
		}
	}
	if open == "" {
		t.Logf("no transaction was open when the coordinator was killed (the guarantee is checked all the same)")
	}
	r.fault(fmt.Sprintf("kill -9 of the coordinator of %d of the %d transactional ids (instance %q had one open)", count(coords, node), len(coords), open), node, true)
	r.finish()
}

// TestCrashClusterGroupCoordinatorKill kills -9 the node that coordinates
// most of the application's consumer groups (kadm FindGroupCoordinators).
func TestCrashClusterGroupCoordinatorKill(t *testing.T) {
	r := startClusterRun(t)
	defer r.h.KillAll()
	groups := r.groups()
	coords := r.c.GroupCoordinators(groups...)
	node := cluster.MostCommon(coords)
	t.Logf("group coordinators: %v", coords)
	r.fault(fmt.Sprintf("kill -9 of the coordinator of %d of the %d groups", count(coords, node), len(coords)), node, true)
	r.finish()
}

// TestCrashClusterRollingRestart restarts the three nodes one after the
// other (SIGTERM, as an operator's rolling restart does), killing an
// instance (kill -9, aimed at an open transaction) while each node is down
// and again once it is back and in sync.
func TestCrashClusterRollingRestart(t *testing.T) {
	r := startClusterRun(t)
	defer r.h.KillAll()
	rng := crashtest.Rand(r.seed)
	mid := 0
	for id := int32(1); id <= int32(r.c.Nodes); id++ {
		r.fault(fmt.Sprintf("rolling restart: SIGTERM of node %d", id), id, false, func() {
			if r.killInstance(rng) {
				mid++
			}
		})
		if r.killInstance(rng) {
			mid++
		}
	}
	t.Logf("%d of %d instance kills landed mid-transaction", mid, 2*r.c.Nodes)
	r.finish()
}

// clusterRun is one cluster fault test: the word count with two instances,
// its input and the commit watch.
type clusterRun struct {
	t         *testing.T
	c         *cluster.Cluster
	h         *harness
	gen       *lineGen
	watch     *cluster.CommitWatch
	names     []string
	seed      uint64
	start     time.Time
	stopInput func()
	faults    []string
}

// backlog is the number of lines waiting when the instances start.
const backlog = 30000

// startClusterRun opens the cluster (or skips), creates the topics
// (replication from the cluster's default, 3), writes the backlog, starts
// two instances, a steady input and the commit watch, and waits until a
// tenth of the backlog's count updates are out.
func startClusterRun(t *testing.T) *clusterRun { return startClusterRunN(t, 2, 100*time.Millisecond) }

// startClusterRunN is startClusterRun with the given number of instances,
// and 50 lines of input every interval.
//
// setup, if any, adjusts the harness before the instances start.
func startClusterRunN(t *testing.T, instances int, interval time.Duration, setup ...func(*harness)) *clusterRun {
	c := cluster.Open(t)
	seed := crashtest.Seed(t)
	brokers := c.Brokers
	app := testbroker.Unique(t, "cluster")
	input, output := app+"-lines", app+"-counts"
	crashtest.CreateTopics(t, brokers, 4, nil, input, output)
	bin := crashtest.Build(t, "wordcount")
	gen := newLineGen(seed, 400)
	produce(t, brokers, input, gen.next(backlog))
	_, words := gen.counts()
	h := newHarness(t, bin, brokers, app, input, output)
	for _, f := range setup {
		f(h)
	}
	r := &clusterRun{t: t, c: c, h: h, gen: gen, seed: seed, start: time.Now()}
	r.watch = cluster.WatchCommits(t, brokers, app+"-")
	r.names = h.StartAll(instances)
	r.stopInput = crashtest.SteadyInput(interval, r.newInput())
	if seen := h.WaitCount(output, words/10, 3*time.Minute); seen < words/10 {
		h.KillAll()
		t.Fatalf("only %d of %d count updates after 3 minutes: the instances do not work", seen, words)
	}
	return r
}

// fault stops node (kill -9 when kill, else SIGTERM), waits until the
// cluster moved its leaderships and then (up to two minutes) until every
// partition that had work waiting commits again, runs during (if any)
// while the node is still down, starts the node again and waits until
// every partition is in sync. It logs the failover and the stall.
func (r *clusterRun) fault(what string, node int32, kill bool, during ...func()) {
	r.t.Helper()
	at := time.Now()
	if kill {
		r.c.Kill(node)
	} else {
		r.c.StopNode(node)
	}
	failover := time.Since(at) + r.c.WaitLeadersMoved(node, 2*time.Minute)
	st := r.watch.WaitMoved(at, 2*time.Minute)
	for _, f := range during {
		f()
	}
	up := r.c.StartNode(node)
	sync := r.c.WaitInSync(3 * time.Minute)
	line := fmt.Sprintf("%s (node %d): the cluster moved its leaderships after %v; %v; node back in %v, in sync %v later",
		what, node, failover.Round(100*time.Millisecond), st, up.Round(100*time.Millisecond), sync.Round(100*time.Millisecond))
	r.faults = append(r.faults, line)
	r.t.Log(line)
}

// newInput returns a function that writes 50 new lines to the input and
// returns once they are acknowledged, for crashtest.SteadyInput. Unlike
// produce (a new client per batch), its one idempotent client gets its
// producer id while every node runs, and it writes again what failed
// while a node was down (its client retries retriable errors itself,
// without a deadline, so what it fails was refused before it was written,
// such as a producer id it could not get): the lines the generator counted
// must all reach the input, whatever the cluster is going through. A
// duplicate line would fail the test, never hide a loss.
func (r *clusterRun) newInput() func() {
	cl := testbroker.NewClient(r.t, r.c.Brokers, kgo.DefaultProduceTopic(r.h.input))
	return func() {
		lines := r.gen.next(50)
		recs := make([]*kgo.Record, len(lines))
		for i, l := range lines {
			recs[i] = &kgo.Record{Value: []byte(l)}
		}
		for try := 1; len(recs) > 0; try++ {
			var failed []*kgo.Record
			var last error
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			res := cl.ProduceSync(ctx, recs...)
			timedOut := ctx.Err() != nil
			cancel()
			if timedOut {
				// Records may be in flight: they cannot be written again.
				r.t.Errorf("producing %d lines to %s took more than 3 minutes: %v", len(recs), r.h.input, res.FirstErr())
				return
			}
			for _, res := range res {
				if res.Err != nil {
					failed, last = append(failed, res.Record), res.Err
				}
			}
			if len(failed) > 0 {
				if try == 10 {
					r.t.Errorf("producing %d lines to %s failed 10 times, last: %v", len(failed), r.h.input, last)
					return
				}
				r.t.Logf("producing %d lines to %s failed (%v): again", len(failed), r.h.input, last)
				time.Sleep(time.Second)
			}
			recs = failed
		}
	}
}

// killInstance kills -9 a random instance, aimed at an open transaction,
// and starts it again; it reports whether a transaction was open.
func (r *clusterRun) killInstance(rng *rand.Rand) bool {
	victim := r.names[rng.IntN(len(r.names))]
	open := r.h.Kill(victim, time.Second)
	r.h.Start(victim)
	return open
}

// finish stops the input, waits for every count update, stops the
// instances and checks the output: exactly the counts 1..n per word, for
// the Go reader and for kcat. It logs the run's time and the faults.
func (r *clusterRun) finish() {
	t := r.t
	r.stopInput()
	want, total := r.gen.counts()
	seen := r.h.WaitCount(r.h.output, total, 5*time.Minute)
	took := time.Since(r.start)
	r.h.StopAll()
	t.Logf("run: %d lines, %d count updates, in %v with %d instances; faults:\n  %s",
		r.gen.lines, total, took.Round(time.Second), len(r.names), strings.Join(r.faults, "\n  "))
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the faults", seen, total)
	}
	recs := testbroker.ReadCommitted(t, r.c.Brokers, r.h.output)
	crashtest.CheckRunningCounts(t, recs, want)
	compareWithKcat(t, r.c.Brokers, r.h.output, recs)
}

// txnIDs returns the application's transactional ids the brokers know.
func (r *clusterRun) txnIDs() []string {
	r.t.Helper()
	adm := testbroker.Admin(r.t, r.c.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txns, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil && len(txns) == 0 {
		r.t.Fatalf("listing transactions: %v", err)
	}
	var ids []string
	for _, id := range txns.TransactionalIDs() {
		if strings.HasPrefix(id, r.h.App+"-") {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		r.t.Fatalf("no transactional id of %s is known to the brokers", r.h.App)
	}
	slices.Sort(ids)
	return ids
}

// groups returns the application's consumer groups.
func (r *clusterRun) groups() []string {
	r.t.Helper()
	adm := testbroker.Admin(r.t, r.c.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := adm.ListGroups(ctx)
	if err != nil {
		r.t.Fatalf("listing groups: %v", err)
	}
	var out []string
	for _, g := range gs.Groups() {
		if strings.HasPrefix(g, r.h.App+"-") {
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		r.t.Fatalf("no consumer group of %s", r.h.App)
	}
	return out
}

// count returns how many values of m are v.
func count(m map[string]int32, v int32) int {
	n := 0
	for _, x := range m {
		if x == v {
			n++
		}
	}
	return n
}
