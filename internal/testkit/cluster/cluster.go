package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// EnvNodes names the environment variable that puts scripts/kafka in
// cluster mode (its number of nodes).
const EnvNodes = "SLUICE_KAFKA_NODES"

// Cluster is a running scripts/kafka cluster that a test may kill nodes of.
type Cluster struct {
	// T is the test that owns the cluster's faults.
	T testing.TB
	// Brokers are the nodes' bootstrap addresses (KAFKA_BROKERS).
	Brokers []string
	// Nodes is the number of nodes; their ids are 1..Nodes.
	Nodes int
	// Script is the path of scripts/kafka.
	Script string
}

// Open returns the cluster the test runs against, or skips the test when
// there is none (see the package doc). Whatever the test does, every node
// runs again when it ends (the cleanup starts the stopped ones).
func Open(t *testing.T) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("cluster fault test; run without -short")
	}
	n, _ := strconv.Atoi(os.Getenv(EnvNodes))
	if n < 3 || !testbroker.Real() {
		t.Skipf("needs the replicated cluster of scripts/kafka: %s=3 scripts/kafka start, then KAFKA_BROKERS=<its addresses> (make test-cluster does both)", EnvNodes)
	}
	script, err := scriptPath()
	if err != nil {
		t.Skipf("scripts/kafka not found (%v): cannot kill nodes", err)
	}
	out, err := exec.Command(script, "status").CombinedOutput()
	if err != nil {
		t.Skipf("`scripts/kafka status` says %q: no cluster of scripts/kafka runs with this environment", strings.TrimSpace(string(out)))
	}
	brokers := testbroker.Brokers(t)
	for i := 1; i <= n; i++ {
		if !strings.Contains(string(out), fmt.Sprintf("node %d running: ", i)) {
			t.Skipf("`scripts/kafka status` does not report node %d running: %s", i, out)
		}
	}
	for _, b := range brokers {
		if !strings.Contains(string(out), "bootstrap "+b+",") {
			t.Skipf("KAFKA_BROKERS=%s is not the cluster of scripts/kafka (%s): not killing nodes of a cluster the suite does not use", strings.Join(brokers, ","), out)
		}
	}
	c := &Cluster{T: t, Brokers: brokers, Nodes: n, Script: script}
	t.Cleanup(c.restartDown)
	return c
}

// scriptPath finds scripts/kafka from this source file's directory.
func scriptPath() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("no caller information")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "..", "scripts", "kafka")
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// run runs scripts/kafka with args and returns how long it took; a
// failure fails the test.
func (c *Cluster) run(args ...string) time.Duration {
	c.T.Helper()
	start := time.Now()
	out, err := exec.Command(c.Script, args...).CombinedOutput()
	if err != nil {
		c.T.Fatalf("scripts/kafka %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(start)
}

// Kill kills node id with SIGKILL (kill -9) and returns once its process
// is gone. The cluster notices after broker.session.timeout.ms.
func (c *Cluster) Kill(id int32) {
	c.T.Helper()
	c.run("kill", strconv.Itoa(int(id)))
}

// StopNode stops node id with SIGTERM (a controlled shutdown: its
// leaderships move first) and returns how long that took.
func (c *Cluster) StopNode(id int32) time.Duration {
	c.T.Helper()
	return c.run("stop-node", strconv.Itoa(int(id)))
}

// StartNode starts node id again on its data and returns, once it is
// ready, how long that took. Its replicas may still be catching up
// (WaitInSync).
func (c *Cluster) StartNode(id int32) time.Duration {
	c.T.Helper()
	return c.run("start-node", strconv.Itoa(int(id)))
}

// restartDown starts every node that is not running (a test that failed
// between a kill and its restart), so that the next test finds the whole
// cluster.
func (c *Cluster) restartDown() {
	out, err := exec.Command(c.Script, "status").CombinedOutput()
	if err == nil {
		return
	}
	for i := 1; i <= c.Nodes; i++ {
		if strings.Contains(string(out), fmt.Sprintf("node %d not running", i)) {
			c.T.Logf("node %d is down at the end of the test: starting it again", i)
			if o, err := exec.Command(c.Script, "start-node", strconv.Itoa(i)).CombinedOutput(); err != nil {
				c.T.Errorf("could not start node %d again: %v\n%s", i, err, o)
			}
		}
	}
}

// WaitInSync waits until every partition of every topic has all its
// replicas in sync (after a node came back), within timeout, and returns
// how long it waited; it fails the test otherwise.
func (c *Cluster) WaitInSync(timeout time.Duration) time.Duration {
	c.T.Helper()
	adm := testbroker.Admin(c.T, c.Brokers)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := WaitInSync(ctx, adm); err != nil {
		c.T.Fatalf("replicas not in sync after %v: %v", timeout, err)
	}
	return time.Since(start)
}

// WaitInSync polls the cluster until no partition of any topic (internal
// ones included) lacks a replica in its ISR, or ctx ends; it then returns
// the last problem seen.
func WaitInSync(ctx context.Context, adm *kadm.Client) error {
	for {
		lagging, err := OutOfSync(ctx, adm)
		if err == nil && len(lagging) == 0 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%d partitions out of sync: %s", len(lagging), strings.Join(first(lagging, 10), ", "))
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// OutOfSync lists the partitions (as "topic/partition: leader, isr [..] of
// replicas [..]") of every topic, internal ones included, that have no
// leader or whose ISR lacks one of their replicas.
func OutOfSync(ctx context.Context, adm *kadm.Client) ([]string, error) {
	tds, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, td := range tds.Sorted() {
		if td.Err != nil {
			out = append(out, fmt.Sprintf("%s: %v", td.Topic, td.Err))
			continue
		}
		for _, pd := range td.Partitions.Sorted() {
			isr := slices.Clone(pd.ISR)
			reps := slices.Clone(pd.Replicas)
			slices.Sort(isr)
			slices.Sort(reps)
			if pd.Leader < 0 || !slices.Equal(isr, reps) || pd.Err != nil {
				out = append(out, fmt.Sprintf("%s/%d: leader %d, isr %v of replicas %v", td.Topic, pd.Partition, pd.Leader, isr, reps))
			}
		}
	}
	return out, nil
}

// Leader returns the node that leads partition p of topic.
func (c *Cluster) Leader(topic string, p int32) int32 {
	c.T.Helper()
	adm := testbroker.Admin(c.T, c.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		c.T.Fatalf("metadata of %s: %v", topic, err)
	}
	pd, ok := tds[topic].Partitions[p]
	if !ok || pd.Leader < 0 {
		c.T.Fatalf("partition %d of %s has no leader (%+v)", p, topic, tds[topic])
	}
	return pd.Leader
}

// WaitLeadersMoved polls the metadata (every 100 ms, up to timeout) until
// no partition of any topic, internal ones included, names node as its
// leader, and returns how long that took: after a kill -9, the cluster's
// own failover (broker.session.timeout.ms, plus a controller election when
// the node was the active controller). It fails the test on timeout.
func (c *Cluster) WaitLeadersMoved(node int32, timeout time.Duration) time.Duration {
	c.T.Helper()
	adm := testbroker.Admin(c.T, c.Brokers)
	start := time.Now()
	var led []string
	for time.Since(start) < timeout {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tds, err := adm.ListTopicsWithInternal(ctx)
		cancel()
		if err == nil {
			led = led[:0]
			for _, td := range tds.Sorted() {
				for _, pd := range td.Partitions.Sorted() {
					if pd.Leader == node {
						led = append(led, fmt.Sprintf("%s/%d", td.Topic, pd.Partition))
					}
				}
			}
			if len(led) == 0 {
				return time.Since(start)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.T.Fatalf("node %d still leads %d partitions after %v: %s", node, len(led), timeout, strings.Join(first(led, 10), ", "))
	return 0
}

// TxnCoordinators returns the node that coordinates each of the
// transactional ids.
func (c *Cluster) TxnCoordinators(ids ...string) map[string]int32 {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.coordinators("transactional id", testbroker.Admin(c.T, c.Brokers).FindTxnCoordinators(ctx, ids...))
}

// GroupCoordinators returns the node that coordinates each of the groups.
func (c *Cluster) GroupCoordinators(groups ...string) map[string]int32 {
	c.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.coordinators("group", testbroker.Admin(c.T, c.Brokers).FindGroupCoordinators(ctx, groups...))
}

func (c *Cluster) coordinators(what string, rs kadm.FindCoordinatorResponses) map[string]int32 {
	c.T.Helper()
	out := map[string]int32{}
	for name, r := range rs {
		if r.Err != nil {
			c.T.Fatalf("finding the coordinator of %s %s: %v", what, name, r.Err)
		}
		out[name] = r.NodeID
	}
	return out
}

// MostCommon returns the node that appears most often among the values of
// m (the lowest id on a tie): the node whose kill hits most of them.
func MostCommon(m map[string]int32) int32 {
	n := map[int32]int{}
	for _, v := range m {
		n[v]++
	}
	ids := make([]int32, 0, len(n))
	for id := range n {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if n[ids[i]] != n[ids[j]] {
			return n[ids[i]] > n[ids[j]]
		}
		return ids[i] < ids[j]
	})
	if len(ids) == 0 {
		return -1
	}
	return ids[0]
}
