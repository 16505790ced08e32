package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// backlogPoller always has as many records as asked for, like a consumer
// with a large backlog, and notes the largest poll.
type backlogPoller struct{ largest int }

func (b *backlogPoller) PollRecords(_ context.Context, n int) kgo.Fetches {
	b.largest = max(b.largest, n)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "in"}
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{Records: recs}}}}}}
}

// TestGatherKeepsTheCommitInterval: with a backlog and slow records, a
// transaction ends soon after the commit interval instead of processing
// the whole record cap, which could outlive the transaction timeout.
func TestGatherKeepsTheCommitInterval(t *testing.T) {
	st := &stage{name: "slow", cfg: stageCfg{commitInterval: 50 * time.Millisecond, maxRecords: 50000}}
	pl := &backlogPoller{}
	n, err := st.gather(context.Background(), pl, func(recs []*kgo.Record) error {
		time.Sleep(time.Duration(len(recs)) * 20 * time.Microsecond) // 20 µs per record
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pl.largest > pollChunk {
		t.Errorf("a poll asked for %d records, more than %d", pl.largest, pollChunk)
	}
	// 50,000 records at 20 µs take a second; one chunk of 1000 takes
	// 20 ms, so the 50 ms interval ends the transaction after a few.
	if n >= st.cfg.maxRecords {
		t.Errorf("gathered %d records (the whole cap) with a 50 ms commit interval: the interval did not end the transaction", n)
	}
}

// TestGatherShrinksPollsOfSlowRecords: once records have proved slow to
// process, a poll takes only as many as a commit interval fits, so that a
// transaction stays near its interval however slow the records (1000 of
// them at 10 ms each would outlive a 10 s transaction timeout).
func TestGatherShrinksPollsOfSlowRecords(t *testing.T) {
	st := &stage{name: "slow", cfg: stageCfg{commitInterval: 20 * time.Millisecond, maxRecords: 50000}}
	slow := func(recs []*kgo.Record) error {
		time.Sleep(time.Duration(len(recs)) * time.Millisecond) // 1 ms per record
		return nil
	}
	first := &backlogPoller{}
	if _, err := st.gather(context.Background(), first, slow); err != nil {
		t.Fatal(err)
	}
	if first.largest != pollChunk {
		t.Fatalf("the first poll asked for %d records, want %d (nothing known about the records yet)", first.largest, pollChunk)
	}
	// The first poll's 1000 records took at least 1 s: a 20 ms interval
	// fits at most 20 of them.
	next := &backlogPoller{}
	n, err := st.gather(context.Background(), next, slow)
	if err != nil {
		t.Fatal(err)
	}
	if next.largest > 20 || n == 0 {
		t.Errorf("after records of 1 ms, polls asked for up to %d records (gathered %d); want at most 20, what the 20 ms interval fits", next.largest, n)
	}
}
