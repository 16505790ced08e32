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

// outputReader reads an output topic with read_committed until it has seen
// want records, checking their checksum, and then watches a little longer
// for records beyond want (duplicates).
type outputReader struct {
	got    checksum
	first  time.Time // first output record seen
	firstN int64     // records seen at first
	last   time.Time // the want-th record seen
	// p10 and p90 are when 10% and 90% of want were seen: the
	// throughput window, clear of startup and of the last commit.
	p10, p90 time.Time
}

// read blocks until the output holds want.n records (then a grace period
// passes), the context ends, stopped is closed, or no record arrives for
// stall. onRecord, if set, sees every record.
func (o *outputReader) read(ctx context.Context, c *Config, brokers []string, topic string, want checksum, stopped <-chan struct{}, onRecord func(r *kgo.Record, now time.Time)) error {
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
		n := 0
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			o.got.add(r.Key, r.Value)
			if onRecord != nil {
				onRecord(r, now)
			}
			if o.got.n == want.n {
				o.last = now
			}
			if o.got.n == (want.n+9)/10 {
				o.p10 = now
			}
			if o.got.n == (want.n*9+9)/10 {
				o.p90 = now
			}
		})
		if n > 0 {
			lastProgress = now
			if o.first.IsZero() {
				o.first, o.firstN = now, o.got.n
			}
		}
		if o.got.n >= want.n {
			if grace.IsZero() {
				grace = now.Add(c.Grace)
			} else if now.After(grace) {
				return nil
			}
			continue
		}
		if time.Since(lastReport) > 5*time.Second {
			lastReport = time.Now()
			c.progress("  output %s: %d/%d records (%.0f%%)", topic, o.got.n, want.n, 100*float64(o.got.n)/float64(want.n))
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-stopped:
			return fmt.Errorf("the system stopped with %d of %d output records", o.got.n, want.n)
		default:
		}
		if time.Since(lastProgress) > c.Stall {
			return fmt.Errorf("no output for %v: %d of %d output records", c.Stall, o.got.n, want.n)
		}
	}
}

// latencies collects end-to-end latencies: the paced producer registers the
// identity of every output record it expects together with the timestamp of
// the input record that causes it; the reader looks it up.
type latencies struct {
	mu      sync.Mutex
	pending map[string]time.Time // zero time: a warm-up record's output
	lat     []time.Duration
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
	l.lat = append(l.lat, now.Sub(ts))
}

// percentiles returns p50, p99 and max in milliseconds.
func (l *latencies) percentiles() (p50, p99, maxMs float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lat) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(l.lat)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return at(0.5), at(0.99), float64(s[len(s)-1]) / float64(time.Millisecond)
}
