package main

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit/crashtest"
)

// EnvSoak names the environment variable that turns the soak on and sets
// its length (a Go duration, e.g. 30m).
const EnvSoak = "SLUICE_SOAK"

// TestCrashClusterSoak is the soak (not in CI): the word count with three
// instances on the replicated cluster for $SLUICE_SOAK (e.g. 30m), a
// steady input, a kill -9 of instance i2 or i3 every minute (aimed at an
// open transaction, restarted at once) and a kill -9 of a random node
// every ten minutes (back and in sync before the soak goes on). Instance
// i1 is never killed: every minute the test samples its resident memory,
// OS threads and open files (from /proc; the binary serves no metrics, so
// goroutines are not sampled) and logs the table, with the records
// processed. At the end, the output must be exact (counts 1..n per word,
// read_committed and kcat). It skips unless SLUICE_SOAK is set and the
// cluster runs.
func TestCrashClusterSoak(t *testing.T) {
	v := os.Getenv(EnvSoak)
	if v == "" {
		t.Skipf("soak: set %s=30m (and run on the cluster of scripts/kafka, SLUICE_KAFKA_NODES=3)", EnvSoak)
	}
	length, err := time.ParseDuration(v)
	if err != nil || length < time.Minute {
		t.Fatalf("%s=%q: want a duration of a minute or more, e.g. 30m", EnvSoak, v)
	}
	// i1 serves the admin endpoints, for its heap and goroutines.
	admin := "127.0.0.1:" + cmp.Or(os.Getenv("SLUICE_SOAK_ADMIN_PORT"), "19330")
	r := startClusterRunN(t, 3, 500*time.Millisecond, func(h *harness) { // 100 lines/s
		h.Flags = func(name string) []string {
			args := append(h.ProcessorFlags(name), h.Args...)
			if name == "i1" {
				args = append(args, "-admin-addr", admin)
			}
			return args
		}
	})
	defer r.h.KillAll()
	rng := crashtest.Rand(r.seed)
	type row struct {
		at                   time.Duration
		rssKiB, threads, fds int
		heapMiB              float64 // Go heap in use (go_memstats_heap_inuse_bytes); -1: not read
		goroutines           int     // go_goroutines; -1: not read
		committed            int64
		event                string
	}
	var rows []row
	sample := func(event string) {
		p := r.h.Proc("i1")
		if p == nil || p.Exited() {
			t.Fatalf("instance i1 is not running: %s", r.h.LogTail("i1"))
		}
		rss, threads := procStatus(t, p.Pid())
		fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p.Pid()), "fd"))
		heap, goroutines := adminMetrics(admin)
		rows = append(rows, row{time.Since(r.start).Round(time.Second), rss, threads, len(fds), heap, goroutines, r.watch.Committed(), event})
	}
	sample("start")
	kills, mid, nodes := 0, 0, 0
	for minute := 1; time.Duration(minute)*time.Minute <= length; minute++ {
		time.Sleep(time.Until(r.start.Add(time.Duration(minute) * time.Minute)))
		event := ""
		if minute%10 == 0 {
			node := int32(1 + rng.IntN(r.c.Nodes))
			r.fault(fmt.Sprintf("soak minute %d: kill -9 of node %d", minute, node), node, true)
			nodes++
			event = fmt.Sprintf("node %d killed", node)
		} else {
			victim := []string{"i2", "i3"}[rng.IntN(2)]
			if r.h.Kill(victim, time.Second) {
				mid++
			}
			r.h.Start(victim)
			kills++
			event = victim + " killed"
		}
		sample(event)
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "| minute | i1 RSS (MiB) | i1 Go heap in use (MiB) | i1 goroutines | i1 threads | i1 open files | offsets committed (all groups) | event |\n|---|---|---|---|---|---|---|---|\n")
	for _, rw := range rows {
		fmt.Fprintf(&tbl, "| %.0f | %.1f | %.1f | %d | %d | %d | %d | %s |\n", rw.at.Minutes(), float64(rw.rssKiB)/1024, rw.heapMiB, rw.goroutines, rw.threads, rw.fds, rw.committed, rw.event)
	}
	t.Logf("soak of %v: %d instance kills (%d mid-transaction), %d node kills\n%s", length, kills, mid, nodes, tbl.String())
	r.finish()
}

// procStatus returns the resident memory (KiB) and thread count of pid.
func procStatus(t *testing.T, pid int) (rssKiB, threads int) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatalf("reading /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKiB, _ = strconv.Atoi(f[1])
		case "Threads:":
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return rssKiB, threads
}

// adminMetrics reads the Go heap in use (MiB) and the goroutines from the
// Prometheus metrics an instance serves at addr; -1 for what it cannot
// read.
func adminMetrics(addr string) (heapMiB float64, goroutines int) {
	heapMiB, goroutines = -1, -1
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_memstats_heap_inuse_bytes":
			heapMiB = v / (1 << 20)
		case "go_goroutines":
			goroutines = int(v)
		}
	}
	return
}
