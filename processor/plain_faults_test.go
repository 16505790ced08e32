package processor

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestPlainProduceFails: under at-least-once and at-most-once a produce that
// fails for reasons other than the records themselves (a broker refusing
// produces for longer than the flush waits; a leader change with
// at-most-once's zero retries) restarts the stage's client instead of
// stopping the processor. At-least-once then loses
// nothing (counts at least the input's), at-most-once counts nothing twice
// (at most the input's) and reports the lost cycle.
func TestPlainProduceFails(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	const flushTimeout = 2 * time.Second // the flush waits up to the transaction timeout
	for _, tc := range []struct {
		g     Guarantee
		err   *kerr.Error
		stall bool // refuse every produce to the output for longer than the flush waits
	}{
		{AtLeastOnce, kerr.NotEnoughReplicas, true},
		{AtMostOnce, kerr.NotLeaderForPartition, false},
	} {
		t.Run(tc.g.String(), func(t *testing.T) {
			c := testbroker.NewKfake(t)
			f := newFixtureOn(t, c.ListenAddrs(), 2)
			f.produce(records("v", 400)...)
			tds, err := testbroker.Admin(t, f.brokers).ListTopics(context.Background(), f.output)
			if err != nil {
				t.Fatal(err)
			}
			outputID := tds[f.output].ID
			var seen atomic.Int32
			var fault atomic.Pointer[kfake.FaultHandle]
			c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
				req := kr.(*kmsg.ProduceRequest)
				for _, rt := range req.Topics {
					if rt.Topic == f.output || rt.TopicID == outputID {
						if seen.Add(1) == 3 {
							flt := kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: f.output, Err: tc.err}
							if tc.stall {
								flt.Count = -1
							}
							h := c.Fault(flt)
							if tc.stall {
								time.AfterFunc(3*flushTimeout/2, h.Remove)
							}
							fault.Store(h)
							return nil, nil, false
						}
						break
					}
				}
				c.KeepControl()
				return nil, nil, false
			})
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(WithGuarantee(tc.g), MaxRecordsPerTransaction(40), TransactionTimeout(flushTimeout))...)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.run(p, func() bool { return f.committedTotal() == 400 && p.Metrics().Stages["count"].Records > 0 }, 2*time.Minute); err != nil {
				t.Fatalf("Run: %v; the stage should have gone on", err)
			}
			h := fault.Load()
			if h == nil || h.Hits() == 0 {
				t.Fatal("the fault never fired")
			}
			m := p.Metrics().Stages["count"]
			if m.Restarts == 0 {
				t.Errorf("the stage did not restart its client: %+v", m)
			}
			if tc.g == AtMostOnce && m.LostCycles == 0 {
				t.Errorf("at-most-once reported no lost cycle: %+v", m)
			}
			final := map[string]int{}
			for _, r := range testbroker.ReadCommitted(t, f.brokers, f.output) {
				n, _ := strconv.Atoi(string(r.Value))
				final[string(r.Key)] = max(final[string(r.Key)], n)
			}
			for k, want := range evenCounts(400) {
				switch {
				case tc.g == AtLeastOnce && final[k] < want:
					t.Errorf("at-least-once lost updates of %s: final count %d < %d", k, final[k], want)
				case tc.g == AtMostOnce && final[k] > want:
					t.Errorf("at-most-once counted %s twice: final count %d > %d", k, final[k], want)
				}
			}
			t.Logf("%s: %d produce faults (%s), metrics %+v, final counts %v", tc.g, h.Hits(), tc.err.Message, m, final)
			f.assertStateMatchesChangelog("count", "totals")
		})
	}
}
