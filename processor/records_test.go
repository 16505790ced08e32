package processor

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// newRecord hands out every record once (franz-go keeps a produced record
// until its promise ran), across chunks and cycle ends.
func TestNewRecordNeverReuses(t *testing.T) {
	st := &stage{}
	seen := map[*kgo.Record]bool{}
	for i := range 5 * recordChunk {
		r := st.newRecord()
		if seen[r] || r.Topic != "" || r.Key != nil {
			t.Fatalf("record %d: handed out before, or not zero", i)
		}
		seen[r] = true
		r.Topic = "used"
		if i%100 == 99 {
			st.endRecords()
		}
	}
}
