package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGatherPacesOrderedStages (found by the review of 4812155): a stage
// with several inputs buffers its gather and processes it at the end
// (order.go), so its gather takes only the records an interval fits at the
// pace of its last processing. Unpaced, a backlog filled the gather with up
// to MaxRecordsPerTransaction records (50,000) within the interval, and at
// 200 µs per record (a starved machine, a join's Pebble reads) processing
// them took 10 s, the default transaction timeout.
func TestGatherPacesOrderedStages(t *testing.T) {
	const iv = 20 * time.Millisecond
	st := &stage{name: "join", cfg: stageCfg{commitInterval: iv, maxRecords: 50000},
		inputs: []topicRef{{name: "in"}, {name: "other"}}}
	slow := func(recs []*kgo.Record) error {
		time.Sleep(time.Duration(len(recs)) * 20 * time.Microsecond)
		return nil
	}
	var took time.Duration
	var n int
	for range 2 {
		start := time.Now()
		var err error
		n, err = st.gather(context.Background(), &backlogPoller{}, slow)
		if err != nil {
			t.Fatal(err)
		}
		took = time.Since(start)
	}
	if took > 10*iv {
		t.Errorf("an ordered gather with a %v interval took %v (%d records of 20 µs processed after the gathering); its pace was never measured", iv, took, n)
	}
}
