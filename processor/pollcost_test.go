package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGatherPerPollCostIsNotPerRecord (found by the review of 4812155): a
// cost the handler pays once per poll (at-most-once's offset commit before
// processing, reported with notFromRecords) is not charged to the records.
// Charged per record, a commit slower than the commit interval shrank each
// poll's limit below the last until polls took one record each and the
// stage committed once per record.
func TestGatherPerPollCostIsNotPerRecord(t *testing.T) {
	st := &stage{name: "amo", cfg: stageCfg{commitInterval: 20 * time.Millisecond, maxRecords: 50000, guarantee: AtMostOnce}}
	amo := func(recs []*kgo.Record) error {
		committing := time.Now()
		time.Sleep(30 * time.Millisecond) // the commit before processing, reported as plain.go does
		st.notFromRecords(time.Since(committing))
		time.Sleep(time.Duration(len(recs)) * 100 * time.Nanosecond) // 0.1 µs per record
		return nil
	}
	var last *backlogPoller
	total := 0
	for range 20 {
		last = &backlogPoller{}
		n, err := st.gather(context.Background(), last, amo)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if last.largest < 100 {
		t.Errorf("records of 0.1 µs behind a 30 ms per-poll commit: polls shrank to %d records (%d records in 20 gathers); the per-poll cost was charged to the records", last.largest, total)
	}
}
