package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLagForgottenWhenPartitionsLeave: a partition that leaves this member
// (revoked, lost, or missing from an assignment) loses the lag its polls
// showed, so that when it comes back with nothing to read it shows none, and
// /healthz does not call the stage stalled for a lag nobody has.
func TestLagForgottenWhenPartitionsLeave(t *testing.T) {
	p, err := New(wordcount(t, "in", "out"), ApplicationID("lag"), Brokers("127.0.0.1:1"), StateDir(t.TempDir()), StallTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	st := p.stages[0]
	if st.inputs[0].name != "in" {
		t.Fatalf("stage %s reads %v, want in", st.name, st.inputs)
	}
	st.partitions = 2
	hold := func() {
		st.mu.Lock()
		st.mu.tasks[0], st.mu.tasks[1] = &task{}, &task{}
		clear(st.mu.revoked)
		st.mu.Unlock()
		p.setPhase(st, phaseRunning)
	}
	// poll is a poll that read partition part up to offset 4 of 15.
	poll := func(part int32) {
		st.noteLag(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{
			Partition: part, HighWatermark: 15, LastStableOffset: 15,
			Records: []*kgo.Record{{Topic: "in", Partition: part, Offset: 4, Timestamp: time.Now()}},
		}}}}}})
	}
	lag := func(part int32) int64 {
		n, _ := st.lag.Load().of(part)
		return n
	}
	for _, tc := range []struct {
		name  string
		leave func()
	}{
		{"revoked", func() { st.onRevoked(context.Background(), nil, map[string][]int32{"in": {0}}) }},
		{"missing from an assignment", func() { st.onSync(map[string][]int32{"in": {1}}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hold()
			poll(0)
			poll(1)
			if lag(0) != 10 || lag(1) != 10 {
				t.Fatalf("lag after the polls = %d, %d, want 10, 10", lag(0), lag(1))
			}
			if why := p.unhealthy(time.Now().Add(2 * time.Minute)); why == "" {
				t.Fatal("a stage with lag that committed nothing for 2 minutes is healthy: the check below proves nothing")
			}
			tc.leave()
			if lag(0) != 0 || lag(1) != 10 {
				t.Errorf("lag after partition 0 left = %d, %d, want 0, 10", lag(0), lag(1))
			}
			// Partition 0 comes back with nothing to read; partition 1
			// catches up.
			hold()
			st.noteLag(kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: []kgo.FetchPartition{{
				Partition: 1, HighWatermark: 15, LastStableOffset: 15,
				Records: []*kgo.Record{{Topic: "in", Partition: 1, Offset: 14, Timestamp: time.Now()}},
			}}}}}})
			if why := p.unhealthy(time.Now().Add(2 * time.Minute)); why != "" {
				t.Errorf("/healthz after partition 0 came back idle: %s", why)
			}
			// A poll that hands over buffered records of a partition
			// that left (no live task) does not bring its lag back.
			st.onRevoked(context.Background(), nil, map[string][]int32{"in": {0}})
			poll(0)
			if lag(0) != 0 {
				t.Errorf("lag of a revoked partition after a poll of its buffered records = %d, want 0", lag(0))
			}
		})
	}
}
