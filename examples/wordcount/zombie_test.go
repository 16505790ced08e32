package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestCrashZombie: of two instances, one is paused with SIGSTOP (aimed at a
// moment when it has a transaction open) and stays paused past its session
// timeout (6 s), until the group has removed it and the other instance has
// taken over all its partitions and committed past them; then it gets
// SIGCONT (at once in the first round; in the second, only past the
// transaction timeout). The zombie's transaction must be fenced (the broker aborted it at
// the transaction timeout and the survivor's restore waited for that), so a
// read_committed reader never sees a duplicate. The zombie must rejoin the
// group or exit cleanly (status 0); which it does is logged. Two rounds, the victim
// picked at random (seeded, SLUICE_CRASH_SEED). Works on kfake and on a real
// broker.
func TestCrashZombie(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test; run without -short")
	}
	seed := crashtest.Seed(t)
	rng := crashtest.Rand(seed)
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "zombie")
	input, output := app+"-lines", app+"-counts"
	crashtest.CreateTopics(t, brokers, 4, nil, input, output)
	bin := crashtest.Build(t, "wordcount")

	gen := newLineGen(rng.Uint64(), 400)
	produce(t, brokers, input, gen.next(5000))
	h := newHarness(t, bin, brokers, app, input, output)
	defer h.KillAll()
	stopInput := h.steadyInput(gen, 50, 100*time.Millisecond)
	defer stopInput()
	names := h.StartAll(2)
	groups := map[string]string{app + "-split": input, app + "-by-word": app + "-by-word-repartition"}
	if err := h.waitFor(60*time.Second, func() (bool, string) {
		m := h.members(groups)
		return m["i1"] == len(groups) && m["i2"] == len(groups), fmt.Sprintf("group membership %v", m)
	}); err != nil {
		t.Fatalf("the two instances never both joined both groups: %v", err)
	}

	const rounds = 2
	midTxn := 0
	var fates []string
	for r := 0; r < rounds; r++ {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		victim := names[rng.IntN(2)]
		p := h.Proc(victim)
		open := h.OpenTransaction(victim)
		for end := time.Now().Add(2 * time.Second); !open && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
			open = h.OpenTransaction(victim)
		}
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		if open {
			midTxn++
		}
		logBefore := h.logSize(victim)
		at := h.committed(groups)

		// The group drops the zombie and the survivor commits past
		// what was committed when it was paused, on every partition of
		// both stages: it owns the zombie's partitions now.
		if err := h.waitFor(90*time.Second, func() (bool, string) {
			m := h.members(groups)
			if m[victim] > 0 {
				return false, fmt.Sprintf("%s is still a member of %d groups", victim, m[victim])
			}
			now := h.committed(groups)
			for tp, o := range at {
				if now[tp] <= o {
					return false, fmt.Sprintf("%s committed at %d, as when paused", tp, now[tp])
				}
			}
			return true, ""
		}); err != nil {
			p.Signal(syscall.SIGCONT)
			t.Fatalf("round %d: the survivor did not take over from the paused %s: %v", r+1, victim, err)
		}
		tookOver := time.Since(paused)
		// Odd rounds wake the zombie as soon as the survivor took over:
		// its transaction may still be open, and its offset commit meets
		// the new group generation (KIP-447). Even rounds wake it past
		// the transaction timeout (10 s): the broker has aborted its
		// transaction and bumped its producer epoch.
		if r%2 == 1 {
			time.Sleep(time.Until(paused.Add(12 * time.Second)))
		}
		if err := p.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		woken := time.Since(paused)

		// The zombie wakes up with a fenced producer and a stale group
		// generation. It must rejoin or exit; either is fine.
		fate := ""
		if err := h.waitFor(60*time.Second, func() (bool, string) {
			if p.Exited() {
				fate = fmt.Sprintf("exited (%v)", p.Err())
				if p.Err() != nil {
					fate += "; last log lines: " + lastLines(h.LogTail(victim), 3)
				}
				return true, ""
			}
			m := h.members(groups)
			if m[victim] == len(groups) && h.logSize(victim) > logBefore {
				fate = "rejoined"
				return true, ""
			}
			return false, fmt.Sprintf("member of %d groups", m[victim])
		}); err != nil {
			t.Fatalf("round %d: %s neither rejoined nor exited after SIGCONT: %v; log: %s", r+1, victim, err, h.LogTail(victim))
		}
		if p.Exited() && p.Err() != nil {
			t.Errorf("round %d: the zombie %s %s: a fenced instance must rejoin or exit cleanly", r+1, victim, fate)
		}
		fenced := h.logGrep(victim, logBefore, `(?i)fenced|unknown outcome|INVALID_PRODUCER_EPOCH|PRODUCER_FENCED|ILLEGAL_GENERATION|UNKNOWN_MEMBER_ID|FENCED_INSTANCE_ID`)
		fates = append(fates, fmt.Sprintf("round %d: %s paused %s a transaction, taken over after %v, woken after %v, then %s; its log after waking: %s",
			r+1, victim, map[bool]string{true: "inside", false: "outside"}[open], tookOver.Round(100*time.Millisecond),
			woken.Round(100*time.Millisecond), fate, fenced))
		if p.Exited() {
			h.Start(victim)
		}
	}
	stopInput()
	want, total := gen.counts()
	seen := h.WaitCount(output, total, 3*time.Minute)
	h.StopAll()
	for _, f := range fates {
		t.Log(f)
	}
	t.Logf("%d zombie rounds, %d paused mid-transaction; %d lines, %d words", rounds, midTxn, gen.lines, total)
	if seen < total {
		t.Fatalf("output has %d of %d count updates", seen, total)
	}
	recs := testbroker.ReadCommitted(t, brokers, output)
	crashtest.CheckRunningCounts(t, recs, want)
	compareWithKcat(t, brokers, output, recs)
	if midTxn == 0 {
		t.Errorf("no zombie was paused inside a transaction: the test proved little (seed %d)", seed)
	}
}

// waitFor polls cond every 200 ms until it holds or timeout passes; the error
// carries cond's last explanation.
func (h *harness) waitFor(timeout time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %s", timeout, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// members returns, per instance id, how many of the groups list it as a
// member.
func (h *harness) members(groups map[string]string) map[string]int {
	adm := testbroker.Admin(h.T, h.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	out := map[string]int{}
	described, err := adm.DescribeGroups(ctx, names...)
	if err != nil {
		return out
	}
	for _, g := range described {
		for _, m := range g.Members {
			if m.InstanceID != nil {
				out[*m.InstanceID]++
			}
		}
	}
	return out
}

// committed returns the committed offsets of the groups on their input
// topics, by "group topic/partition".
func (h *harness) committed(groups map[string]string) map[string]int64 {
	adm := testbroker.Admin(h.T, h.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := map[string]int64{}
	for g, topic := range groups {
		resp, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			continue
		}
		resp.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil {
				out[fmt.Sprintf("%s %s/%d", g, o.Topic, o.Partition)] = o.At
			}
		})
	}
	return out
}

func (h *harness) logSize(name string) int64 {
	fi, err := os.Stat(h.LogPath(name))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logGrep returns the distinct matches of re in the instance's log after
// byte offset from.
func (h *harness) logGrep(name string, from int64, re string) string {
	b, _ := os.ReadFile(h.LogPath(name))
	if int64(len(b)) < from {
		from = 0
	}
	seen := map[string]bool{}
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllString(string(b[from:]), -1) {
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return "nothing about fencing"
	}
	return strings.Join(out, ", ")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
