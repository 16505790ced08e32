package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestCrashBrokerRestart restarts the broker (scripts/kafka stop, then
// scripts/kafka start --keep) while two wordcount instances work through a
// backlog, aimed at a moment when one of them has a transaction open. The
// instances must recover without help (neither may exit) and the output must
// hold exactly the counts 1..n per word for a read_committed reader (and for
// kcat).
//
// It restarts the broker the suite uses, so it runs only when that broker
// was started by scripts/kafka: KAFKA_BROKERS must name the address that
// `scripts/kafka status` reports (same SLUICE_KAFKA_* environment). It skips
// otherwise, and when SLUICE_NO_BROKER_RESTART is set (for a broker other
// work shares). Whatever happens, it starts the broker again before it ends
// if the broker is not running.
func TestCrashBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	if !testbroker.Real() {
		t.Skip("needs the real broker: restarts the broker started by scripts/kafka (KAFKA_BROKERS=127.0.0.1:9092 after scripts/kafka start)")
	}
	if os.Getenv("SLUICE_NO_BROKER_RESTART") != "" {
		t.Skip("SLUICE_NO_BROKER_RESTART is set: not restarting the shared broker")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "kafka"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("scripts/kafka not found (%v): cannot restart the broker", err)
	}
	status, err := exec.Command(script, "status").CombinedOutput()
	if err != nil {
		t.Skipf("`scripts/kafka status` says %q: the broker at KAFKA_BROKERS=%s was not started by scripts/kafka, so this test will not restart it",
			strings.TrimSpace(string(status)), os.Getenv(testbroker.EnvBrokers))
	}
	m := regexp.MustCompile(`bootstrap (\S+),`).FindStringSubmatch(string(status))
	brokers := testbroker.Brokers(t)
	if m == nil || !slices.Contains(brokers, m[1]) {
		t.Skipf("`scripts/kafka status` reports %q, which is not KAFKA_BROKERS=%s: not restarting a broker the suite does not use",
			strings.TrimSpace(string(status)), strings.Join(brokers, ","))
	}
	kafka := func(args ...string) (time.Duration, error) {
		start := time.Now()
		out, err := exec.Command(script, args...).CombinedOutput()
		if err != nil {
			t.Logf("scripts/kafka %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return time.Since(start), err
	}
	t.Cleanup(func() {
		if exec.Command(script, "status").Run() != nil {
			t.Logf("the broker is down at the end of the test: starting it again")
			if _, err := kafka("start", "--keep"); err != nil {
				t.Errorf("could not start the broker again: the suite's broker is DOWN (run scripts/kafka start --keep)")
			}
		}
	})

	seed := crashtest.Seed(t)
	app := testbroker.Unique(t, "restart")
	input, output := app+"-lines", app+"-counts"
	crashtest.CreateTopics(t, brokers, 4, nil, input, output)
	bin := crashtest.Build(t, "wordcount")
	gen := newLineGen(seed, 400)
	produce(t, brokers, input, gen.next(40000))
	_, backlog := gen.counts()
	h := newHarness(t, bin, brokers, app, input, output)
	defer h.KillAll()
	names := h.StartAll(2)

	// Restart when part of the backlog is counted, aimed at an open
	// transaction.
	before := h.WaitCount(output, backlog/5, 2*time.Minute)
	if before < backlog/5 {
		t.Fatalf("only %d of %d count updates before the restart: the instances do not work", before, backlog)
	}
	open := ""
	for end := time.Now().Add(time.Second); open == "" && time.Now().Before(end); {
		for _, n := range names {
			if h.OpenTransaction(n) {
				open = n
				break
			}
		}
	}
	down, err := kafka("stop")
	if err != nil {
		t.Fatal("could not stop the broker")
	}
	stoppedAt := time.Now()
	up, err := kafka("start", "--keep")
	if err != nil {
		t.Fatal("could not start the broker again")
	}
	who := "no instance"
	if open != "" {
		who = "instance " + open
	}
	t.Logf("broker stopped in %v (%s had a transaction open), started again in %v: %v without a broker",
		down.Round(100*time.Millisecond), who, up.Round(100*time.Millisecond), time.Since(stoppedAt).Round(100*time.Millisecond))

	// New input after the restart flows too.
	produce(t, brokers, input, gen.next(5000))
	want, total := gen.counts()
	seen := h.WaitCount(output, total, 4*time.Minute)
	h.StopAll()
	t.Logf("%d lines, %d words; at least %d of the backlog's %d count updates were read before the restart", gen.lines, total, before, backlog)
	if seen < total {
		t.Fatalf("output has %d of %d count updates after the broker restart", seen, total)
	}
	recs := testbroker.ReadCommitted(t, brokers, output)
	crashtest.CheckRunningCounts(t, recs, want)
	compareWithKcat(t, brokers, output, recs)
	if open == "" {
		t.Logf("no transaction was open when the broker stopped (the guarantee was checked all the same)")
	}
}
