package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// cpuTime returns the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS returns freed memory to the OS and resets the kernel's peak
// RSS (VmHWM) to the current RSS ("5" > /proc/self/clear_refs), so the next
// peakRSS is the peak of what runs in between. It reports whether the reset
// worked (Linux only).
func resetPeakRSS() bool {
	runtime.GC()
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS returns VmHWM from /proc/self/status, or getrusage's maxrss.
func peakRSS() int64 {
	if f, err := os.Open("/proc/self/status"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				if err == nil {
					return kb << 10
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		return ru.Maxrss << 10
	}
	return 0
}

// procCPU returns the user + system CPU time of process pid so far, from
// /proc/<pid>/stat (utime and stime, in clock ticks of 100 Hz on Linux), or
// false where there is no /proc.
func procCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; the fields after it
	// start behind its closing parenthesis.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const tick = 10 * time.Millisecond // sysconf(_SC_CLK_TCK) = 100 on Linux
	return time.Duration(ut+st) * tick, true
}

// windowSpec asks outputReader.read for a fixed-duration window: it opens
// warmup after the first output record and lasts length.
type windowSpec struct {
	warmup, length time.Duration
	// cpu, if set, is read at the window's start and end.
	cpu func() time.Duration
}

// outputReader reads an output topic with read_committed, checking every
// record, until a measurement ends:
//
//   - drain (no window): until want records were seen, then a grace period
//     passes (duplicates would show), recording when 10% and 90% of want
//     were seen (the steady-state window of the drain method);
//   - window: until the window is over (the system still has input left),
//     or until want records were seen, whichever comes first; then the
//     window is cut short (cutShort) and the caller says so.
type outputReader struct {
	check *outputCheck // nil: only count (the restore benchmark)
	n     int64        // records seen
	first time.Time    // first output record seen
	last  time.Time    // the want-th record seen
	// p10 and p90 are when 10% and 90% of want were seen.
	p10, p90 time.Time

	// Window mode: when the window opened and closed, the records seen
	// and the CPU time then.
	winStart, winEnd time.Time
	nStart, nEnd     int64
	cpuStart, cpuEnd time.Duration
	cutShort         bool
}

// read blocks until the measurement is over (see outputReader), the context
// ends, stopped is closed, or no record arrives for c.Stall.
func (o *outputReader) read(ctx context.Context, c *Config, brokers []string, topic string, want int64, win windowSpec, stopped <-chan struct{}) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	lastProgress := time.Now()
	lastReport := time.Now()
	var grace time.Time
	for {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fetches := cl.PollFetches(pctx)
		cancel()
		now := time.Now()
		seen := o.n
		fetches.EachRecord(func(r *kgo.Record) {
			o.n++
			if o.check != nil {
				o.check.add(r.Key, r.Value)
			}
			if o.n == want {
				o.last = now
			}
			if o.n == (want+9)/10 {
				o.p10 = now
			}
			if o.n == (want*9+9)/10 {
				o.p90 = now
			}
		})
		if o.n > seen {
			lastProgress = now
			if o.first.IsZero() {
				o.first = now
			}
		}
		if win.length > 0 && o.advanceWindow(now, want, win) {
			return nil
		}
		if o.n >= want {
			if grace.IsZero() {
				grace = now.Add(c.Grace)
			} else if now.After(grace) {
				return nil
			}
			continue
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			c.progress("  output %s: %d/%d records (%.0f%%)", topic, o.n, want, 100*float64(o.n)/float64(want))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-stopped:
			return fmt.Errorf("the system stopped with %d of %d output records", o.n, want)
		default:
		}
		if time.Since(lastProgress) > c.Stall {
			return fmt.Errorf("no output for %v: %d of %d output records", c.Stall, o.n, want)
		}
	}
}

// advanceWindow opens and closes the window as time passes and records
// arrive; it reports whether the window is over with input left.
func (o *outputReader) advanceWindow(now time.Time, want int64, win windowSpec) bool {
	if o.first.IsZero() {
		return false
	}
	readCPU := func() time.Duration {
		if win.cpu == nil {
			return 0
		}
		return win.cpu()
	}
	if o.winStart.IsZero() && now.Sub(o.first) >= win.warmup && o.n < want {
		o.winStart, o.nStart, o.cpuStart = now, o.n, readCPU()
	}
	if !o.winStart.IsZero() && o.winEnd.IsZero() {
		switch {
		case now.Sub(o.winStart) >= win.length:
			o.winEnd, o.nEnd, o.cpuEnd = now, o.n, readCPU()
			return true
		case o.n >= want:
			o.winEnd, o.nEnd, o.cpuEnd = now, o.n, readCPU()
			o.cutShort = true
		}
	}
	if o.n >= want && o.winStart.IsZero() {
		o.cutShort = true
	}
	return false
}

// latencies collects end-to-end latencies: the paced producer registers the
// identity of every output record it expects together with the timestamp of
// the input record that causes it; the reader looks it up. Latencies are
// kept per phase (one paced probe), and the outputs later than the phase's
// bound are counted as they arrive, so a probe can tell early that its p99
// will miss the bound.
type latencies struct {
	mu      sync.Mutex
	pending map[string]time.Time // zero time: a warm-up record's output
	lat     []time.Duration      // this phase's
	late    int                  // this phase's outputs seen later than bound
	bound   time.Duration
	unknown int
	warm    bool // a warm-up output was seen
}

func newLatencies() *latencies { return &latencies{pending: map[string]time.Time{}} }

func identity(k, v []byte) string { return string(k) + "\x00" + string(v) }

func (l *latencies) expect(k, v []byte, ts time.Time) {
	l.mu.Lock()
	l.pending[identity(k, v)] = ts
	l.mu.Unlock()
}

// expectWarmup registers an output whose latency does not count.
func (l *latencies) expectWarmup(k, v []byte) {
	l.mu.Lock()
	l.pending[identity(k, v)] = time.Time{}
	l.mu.Unlock()
}

func (l *latencies) sawWarmup() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.warm
}

func (l *latencies) outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// startPhase forgets the previous phase's latencies.
// REQUIRES: nothing outstanding from the previous phase.
func (l *latencies) startPhase(bound time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lat, l.late, l.bound = nil, 0, bound
}

func (l *latencies) seen(k, v []byte, now time.Time) {
	id := identity(k, v)
	l.mu.Lock()
	defer l.mu.Unlock()
	ts, ok := l.pending[id]
	if !ok {
		l.unknown++
		return
	}
	delete(l.pending, id)
	if ts.IsZero() {
		l.warm = true
		return
	}
	d := now.Sub(ts)
	l.lat = append(l.lat, d)
	if l.bound > 0 && d > l.bound {
		l.late++
	}
}

// lateBy returns how many of this phase's outputs are already later than
// the bound at now: seen late, or still outstanding and sent more than the
// bound ago. It scans the outstanding outputs.
func (l *latencies) lateBy(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.late
	for _, ts := range l.pending {
		if !ts.IsZero() && now.Sub(ts) > l.bound {
			n++
		}
	}
	return n
}

// percentiles returns this phase's count, p50, p99 and max in milliseconds.
func (l *latencies) percentiles() (n int, p50, p99, maxMs float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lat) == 0 {
		return 0, 0, 0, 0
	}
	s := slices.Clone(l.lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return len(s), at(0.5), at(0.99), float64(s[len(s)-1]) / float64(time.Millisecond)
}
