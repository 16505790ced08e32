package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// SampleInterval is how often a CommitWatch reads the committed offsets.
const SampleInterval = 200 * time.Millisecond

// CommitWatch samples, every SampleInterval, the committed offsets of an
// application's consumer groups (every group whose name starts with its
// prefix) and the end offsets of the topics they consume, to tell how long
// the application committed nothing after a fault (Stall).
//
// What it measures is what a read_committed observer of the commits sees:
// a transactional offset commit counts once its transaction committed. Its
// own requests fail over like any client's (what a sample could not read
// from a killed node is left out of it), which can add up to a sample
// interval and one request timeout to a stall.
type CommitWatch struct {
	adm    *kadm.Client
	prefix string
	groups []string // the groups seen so far; only run touches it
	quit   chan struct{}
	done   chan struct{}

	mu struct {
		sync.Mutex
		samples []sample
	}
}

// sample is one reading: committed and end offsets per group partition.
type sample struct {
	at   time.Time
	offs map[gp]int64 // committed offset
	ends map[gp]int64 // end offset of the partition's topic when sampled
}

// gp is a partition a group consumes.
type gp struct {
	group, topic string
	partition    int32
}

func (k gp) String() string { return fmt.Sprintf("%s %s/%d", k.group, k.topic, k.partition) }

// WatchCommits starts a CommitWatch of the groups whose names start with
// prefix (e.g. "<app>-"); it stops when the test ends.
func WatchCommits(t testing.TB, brokers []string, prefix string) *CommitWatch {
	// A short metadata min age: after a failover the watch sees the new
	// leaders and coordinators at once (franz-go's default waits up to 5 s
	// between refreshes), so that it does not add its own delay.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RetryTimeout(time.Second),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		t.Fatalf("commit watch: %v", err)
	}
	w := &CommitWatch{adm: kadm.NewClient(cl), prefix: prefix, quit: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(func() {
		w.Stop()
		cl.Close()
	})
	return w
}

// Stop stops the sampling; it may be called more than once.
func (w *CommitWatch) Stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}

func (w *CommitWatch) run() {
	defer close(w.done)
	for {
		if s, ok := w.read(); ok {
			w.mu.Lock()
			w.mu.samples = append(w.mu.samples, s)
			w.mu.Unlock()
		}
		select {
		case <-w.quit:
			return
		case <-time.After(SampleInterval):
		}
	}
}

// read takes one sample. A request that fails (its broker was killed and
// the cluster has not moved its partitions yet) leaves out what it was
// for: a group whose offsets could not be read, a partition whose end
// could not be listed. ok is false when nothing was read.
func (w *CommitWatch) read() (sample, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s := sample{offs: map[gp]int64{}, ends: map[gp]int64{}}
	// ListGroups asks every broker: with one down it fails, and the
	// groups seen before stand in.
	if groups, err := w.adm.ListGroups(ctx); err == nil {
		for _, g := range groups.Groups() {
			if strings.HasPrefix(g, w.prefix) && !slices.Contains(w.groups, g) {
				w.groups = append(w.groups, g)
			}
		}
	}
	topics := map[string]bool{}
	for _, g := range w.groups {
		offs, err := w.adm.FetchOffsets(ctx, g)
		if err != nil {
			continue
		}
		offs.Each(func(o kadm.OffsetResponse) {
			if o.Err == nil {
				s.offs[gp{g, o.Topic, o.Partition}] = o.At
				topics[o.Topic] = true
			}
		})
	}
	if len(s.offs) == 0 {
		return s, false
	}
	var ts []string
	for t := range topics {
		ts = append(ts, t)
	}
	ends, _ := w.adm.ListEndOffsets(ctx, ts...)
	for k := range s.offs {
		if e, ok := ends.Lookup(k.topic, k.partition); ok && e.Err == nil {
			s.ends[k] = e.Offset
		}
	}
	s.at = time.Now()
	return s, true
}

// Committed returns the largest sum of committed offsets (of every
// partition of every group watched) among the samples: how far the
// application got. (A sample taken during a failover may lack a group.)
func (w *CommitWatch) Committed() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var most int64
	for _, s := range w.mu.samples {
		var n int64
		for _, o := range s.offs {
			n += o
		}
		most = max(most, n)
	}
	return most
}

// Stall is what Stall measured after one fault.
type Stall struct {
	// All is how long after the fault the last of the partitions that had
	// work waiting at the fault committed again: the longest any of the
	// application's work stood still.
	All time.Duration
	// First is how long after the fault the first such partition
	// committed again.
	First time.Duration
	// Partitions is how many partitions had work waiting at the fault;
	// Stuck how many of them never committed again while watched.
	Partitions, Stuck int
	// Slowest names the partition that took All.
	Slowest string
}

func (s Stall) String() string {
	if s.Partitions == 0 {
		return "no partition had work waiting"
	}
	out := fmt.Sprintf("all %d busy partitions committing again after %v (first after %v; slowest %s)",
		s.Partitions, s.All.Round(100*time.Millisecond), s.First.Round(100*time.Millisecond), s.Slowest)
	if s.Stuck > 0 {
		out += fmt.Sprintf("; %d NEVER committed again while watched", s.Stuck)
	}
	return out
}

// Stall measures the commit stall after a fault at time at: among the
// group partitions that had work waiting in the last sample before at
// (committed offset below the end), how long until each one's committed
// offset moved past what it was then. A partition that did not move while
// watched counts as stuck, with the time until the last sample.
func (w *CommitWatch) Stall(at time.Time) Stall {
	w.mu.Lock()
	samples := w.mu.samples
	w.mu.Unlock()
	var base *sample
	for i := range samples {
		if samples[i].at.After(at) {
			break
		}
		base = &samples[i]
	}
	var st Stall
	if base == nil || len(samples) == 0 {
		return st
	}
	last := samples[len(samples)-1].at
	st.First = -1
	for k, o := range base.offs {
		if e, ok := base.ends[k]; !ok || o >= e {
			continue // no work waiting
		}
		st.Partitions++
		moved := time.Duration(-1)
		for i := range samples {
			s := &samples[i]
			if !s.at.After(at) {
				continue
			}
			if n, ok := s.offs[k]; ok && n > o {
				moved = s.at.Sub(at)
				break
			}
		}
		if moved < 0 {
			st.Stuck++
			moved = last.Sub(at)
		}
		if moved > st.All {
			st.All, st.Slowest = moved, k.String()
		}
		if st.First < 0 || moved < st.First {
			st.First = moved
		}
	}
	if st.First < 0 {
		st.First = 0
	}
	return st
}

// WaitMoved waits, up to timeout, until every partition that had work
// waiting at time at committed again (or none had), and returns Stall(at).
func (w *CommitWatch) WaitMoved(at time.Time, timeout time.Duration) Stall {
	deadline := time.Now().Add(timeout)
	for {
		st := w.Stall(at)
		if (st.Partitions > 0 && st.Stuck == 0) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(SampleInterval)
	}
}
