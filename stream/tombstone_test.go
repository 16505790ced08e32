package stream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// tombStore is a fakeStore that remembers deleted keys, as an LSM store
// (Pebble) keeps a tombstone for each until it compacts, and counts the
// tombstones each Scan steps over: the work an LSM iterator does that a map
// does not show.
type tombStore struct {
	fakeStore
	dead    map[string]bool
	stepped int // tombstones stepped over by every Scan so far
}

func (s *tombStore) Put(key, value []byte) error {
	delete(s.dead, string(key))
	return s.fakeStore.Put(key, value)
}

func (s *tombStore) Delete(key []byte) error {
	s.dead[string(key)] = true
	return s.fakeStore.Delete(key)
}

func (s *tombStore) Scan(lower, upper []byte, fn func(key, value []byte) error) error {
	for k := range s.dead {
		if k >= string(lower) && (upper == nil || k < string(upper)) {
			s.stepped++
		}
	}
	return s.fakeStore.Scan(lower, upper, fn)
}

// tombTask is a fakeTask whose stores are tombStores.
type tombTask struct {
	*fakeTask
	stores map[string]*tombStore
}

func (t *tombTask) Store(name string) exec.Store {
	if s, ok := t.stores[name]; ok {
		return s
	}
	return nil
}

// TestStreamTimeHooksSkipReleasedEntries: the operators that release or
// expire entries as stream time moves (SuppressUntilWindowCloses, the
// windowed aggregations' expiry, the stream-stream join's expiry) scan only
// the entries that can fall due, not the tombstones of every entry released
// before. Each of 1,000 records here opens a window that closes a few
// records later, so the stores keep ~1,000 tombstones or more by the end (no
// compaction in this store); a scan from the start of each index would step
// over ~500,000 of them (n²/2), one that starts at the previous stream
// time over a handful per record.
func TestStreamTimeHooksSkipReleasedEntries(t *testing.T) {
	const n = 1000
	cases := []struct {
		name  string
		build func(b *stream.Builder)
		recs  func(i int) []*exec.Record
	}{
		{"sessions, suppressed", func(b *stream.Builder) {
			g := stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{})
			c := stream.WindowedCount(stream.WindowedBy(g, stream.Sessions(2*time.Second).Grace(time.Second)), stream.Named("counts"))
			windowedTo(stream.SuppressUntilWindowCloses(c, stream.Named("final")), "out")
		}, func(i int) []*exec.Record { return []*exec.Record{rec("in", 0, int64(i), fmt.Sprint("k", i), "v")} }},
		{"tumbling, suppressed", func(b *stream.Builder) {
			g := stream.GroupByKey(src(b, "in"), codec.String{}, codec.String{})
			c := stream.WindowedCount(stream.WindowedBy(g, stream.Tumbling(2*time.Second).Grace(time.Second)), stream.Named("counts"))
			windowedTo(stream.SuppressUntilWindowCloses(c, stream.Named("final")), "out")
		}, func(i int) []*exec.Record { return []*exec.Record{rec("in", 0, int64(i), fmt.Sprint("k", i), "v")} }},
		{"stream-stream outer join", func(b *stream.Builder) {
			l, r := src(b, "l"), src(b, "r")
			stream.To(stream.StreamOuterJoin(l, r, stream.Within(2*time.Second).Grace(time.Second),
				func(_, a string, _ bool, c string, _ bool) string { return a + c }, codec.String{}, codec.String{}, stream.Named("join")),
				"out", codec.String{}, codec.String{})
		}, func(i int) []*exec.Record {
			return []*exec.Record{rec("l", 0, int64(i), fmt.Sprint("k", i), "a"), rec("r", 0, int64(i), fmt.Sprint("j", i), "b")}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := stream.NewBuilder()
			c.build(b)
			topo, err := b.Build()
			if err != nil {
				t.Fatal(err)
			}
			spec := topology.Of(topo).Stages[0]
			task := &tombTask{fakeTask: newTask(0), stores: map[string]*tombStore{}}
			for _, s := range spec.Stores {
				task.stores[s.Name] = &tombStore{fakeStore: fakeStore{m: map[string][]byte{}}, dead: map[string]bool{}}
			}
			p := spec.Program("app")
			for i := range n {
				for _, r := range c.recs(i) {
					if err := p(task, r); err != nil {
						t.Fatalf("record %d: %v", i, err)
					}
				}
			}
			stepped, dead := 0, 0
			for _, s := range task.stores {
				stepped += s.stepped
				dead += len(s.dead)
			}
			if dead < n {
				t.Fatalf("the stores hold %d tombstones after %d records: the test's windows did not close as it expects", dead, n)
			}
			if len(task.take()) == 0 {
				t.Fatalf("nothing was emitted")
			}
			if stepped > 10*n {
				t.Errorf("the scans stepped over %d tombstones for %d records (%d left in the stores): scans start before the entries that can fall due", stepped, n, dead)
			}
		})
	}
}
