package processor

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestIntegrationAtMostOnceFailCommitsNothingPastTheRecord: at-most-once commits a
// poll's offsets before processing it, but when the Fail policy stops the
// stage at a bad record in the middle of the poll, the committed offset of
// the bad record's partition is the bad record's own, and no partition's is
// past a record that was not processed: the committed offsets count exactly
// the records processed. Every key has one bad record in the middle of the
// input, so both partitions hold one, and whichever partition the poll
// hands over second still has unprocessed records when the first one
// fails. A new processor of the same application, run with the Skip policy
// (what an operator does to get past a poison record), resumes at the bad
// record: it skips the bad records and processes every other record after
// them, once. The output counts are then exactly 1..n per key, with n the
// input's count less the bad record: no record lost, none processed twice.
func TestIntegrationAtMostOnceFailCommitsNothingPastTheRecord(t *testing.T) {
	for _, bad := range []string{"boom", "panic"} {
		t.Run(bad, func(t *testing.T) {
			f := newFixture(t, 2)
			const n = 300
			in := records("v", n)
			for i := 150; i < 155; i++ { // the 31st record of each key, of 60
				in[i] = fmt.Sprintf("k%d=%s", i%5, bad)
			}
			f.produce(in...)
			ends := f.inputEnds()

			// One poll of everything (on kfake; a real broker may hand
			// the partitions over in two polls): the first bad record
			// sits in its middle.
			opts := []Opt{WithGuarantee(AtMostOnce), CommitInterval(time.Second), MaxRecordsPerTransaction(1000)}
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(append(opts, ErrorPolicy(Fail))...)...)
			if err != nil {
				t.Fatal(err)
			}
			err = f.run(p, func() bool { return false }, time.Minute)
			var rerr *RecordError
			if !errors.As(err, &rerr) {
				t.Fatalf("Run: %v, want a *RecordError", err)
			}
			committed := f.committedOffsets("count")
			if got := committed[rerr.Partition]; got != rerr.Offset {
				t.Errorf("partition %d: committed offset %d after the Fail at offset %d; want %d (nothing past the failing record)", rerr.Partition, got, rerr.Offset, rerr.Offset)
			}
			if rerr.Offset >= ends[rerr.Partition]-1 {
				t.Fatalf("the bad record %d is the last of partition %d (end %d): the test needs records after it", rerr.Offset, rerr.Partition, ends[rerr.Partition])
			}
			out1 := len(testbroker.ReadCommitted(t, f.brokers, f.output))
			t.Logf("first run: Fail at %s/%d@%d, committed %v of %v, %d outputs", rerr.Topic, rerr.Partition, rerr.Offset, committed, ends, out1)
			if int64(out1) != sum(committed) {
				t.Errorf("%d outputs for %d committed input records: the committed offsets are past records that were not processed", out1, sum(committed))
			}

			p, err = New(counterTopology(t, f.input, f.output, ""), f.opts(append(opts, ErrorPolicy(Skip))...)...)
			if err != nil {
				t.Fatal(err)
			}
			err = f.run(p, func() bool {
				return f.committedTotal() == n && p.Metrics().Stages["count"].Skipped == 5
			}, 30*time.Second)
			if err != nil {
				t.Fatalf("second Run: %v", err)
			}
			if s := p.Metrics().Stages["count"].Skipped; s != 5 {
				t.Errorf("the second run skipped %d records, want 5 (the bad records, from the one where the first run stopped)", s)
			}
			want := evenCounts(n)
			for k := range want {
				want[k]--
			}
			checkExactCounts(t, testbroker.ReadCommitted(t, f.brokers, f.output), want)
			f.assertStateMatchesChangelog("count", "totals")
		})
	}
}

// inputEnds returns the end offset of every partition of the input.
func (f *fixture) inputEnds() map[int32]int64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	offs, err := testbroker.Admin(f.t, f.brokers).ListEndOffsets(ctx, f.input)
	if err != nil {
		f.t.Fatal(err)
	}
	ends := map[int32]int64{}
	offs.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	if len(ends) != int(f.partitions) {
		f.t.Fatalf("end offsets of %s: %v", f.input, ends)
	}
	return ends
}
