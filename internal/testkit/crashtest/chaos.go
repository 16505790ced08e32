package crashtest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// Chaos counts what a [Harness.Chaos] run did.
type Chaos struct {
	// Kills is the number of SIGKILLs sent.
	Kills int
	// MidTxn is how many of them landed while the victim had a
	// transaction open (see [Harness.Kill]).
	MidTxn int
	// Wiped is how many victims lost their state directory with the kill,
	// so that their restart restored from the changelogs.
	Wiped int
	// Outages is how many victims stayed down past the session timeout,
	// so that the group moved their partitions to the others and back.
	Outages int
}

// Chaos kills the running instances among names kills times, each time
// after a random pause of 0.3 to 2.3 s, aiming at an open transaction
// (Kill, with h.Aim); it deletes the victim's state directory one
// time in four, and restarts the victim at once. With more than one name,
// the victim of the middle kill stays down for 8 s (past the test profile's
// 6 s session timeout) while the kills go on. Every instance runs again
// when Chaos returns. The instances must have been started.
func (h *Harness) Chaos(rng *rand.Rand, names []string, kills int) Chaos {
	var c Chaos
	aim := h.Aim
	if aim == 0 {
		aim = 500 * time.Millisecond
	}
	downUntil := map[string]time.Time{}
	for k := range kills {
		time.Sleep(time.Duration(300+rng.IntN(2000)) * time.Millisecond)
		for name, until := range downUntil {
			if time.Now().After(until) {
				h.Start(name)
				delete(downUntil, name)
			}
		}
		var running []string
		for _, n := range names {
			if h.Proc(n) != nil {
				running = append(running, n)
			}
		}
		victim := running[rng.IntN(len(running))]
		c.Kills++
		if h.Kill(victim, aim) {
			c.MidTxn++
		}
		if rng.IntN(4) == 0 {
			os.RemoveAll(h.StateDir(victim))
			c.Wiped++
		}
		if len(names) > 1 && k == kills/2 {
			downUntil[victim] = time.Now().Add(8 * time.Second)
			c.Outages++
			continue
		}
		h.Start(victim)
	}
	for name := range downUntil {
		h.Start(name)
	}
	return c
}

// String reports the counts as a crash test logs them.
func (c Chaos) String() string {
	return fmt.Sprintf("%d kills, %d landed mid-transaction, %d state directories wiped, %d outages past the session timeout",
		c.Kills, c.MidTxn, c.Wiped, c.Outages)
}

// CheckMidTxn fails t when no kill landed while a transaction was open:
// then the run proved nothing.
func (c Chaos) CheckMidTxn(t testing.TB, seed uint64) {
	t.Helper()
	if c.MidTxn == 0 {
		t.Errorf("no kill landed while a transaction was open: the test proved nothing (seed %d)", seed)
	}
}
