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
