package processor

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// TestIntegrationWordcount runs the word count over 10,000 lines on 4 input
// partitions and checks the exactly-once property of the output.
func TestIntegrationWordcount(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "wc")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 4, nil)
	testbroker.CreateTopic(t, brokers, output, 4, nil)
	lines, want, total := randomLines(1, 10000, 300)
	produceLines(t, brokers, input, lines)

	dir := t.TempDir()
	p, err := New(wordcount(t, input, output), append(testOpts(t, brokers, app), StateDir(dir))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if got := waitRecords(t, brokers, output, total, 3*time.Minute); got < total {
		cancel()
		t.Fatalf("output has %d of %d records (processor: %v)", got, total, <-done)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCounts(t, testbroker.ReadCommitted(t, brokers, output), want)
	// The store holds each word's count.
	db, err := state.Open(filepath.Join(dir, app))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stored := map[string]int{}
	for part := int32(0); part < 4; part++ {
		txn := db.NewTxn()
		err := txn.Store("counts", part).Scan(nil, nil, func(k, v []byte) error {
			n, err := codec.Int64{}.Decode(v)
			stored[string(k)] = int(n)
			return err
		})
		txn.Discard()
		if err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(stored) != fmt.Sprint(want) {
		t.Errorf("the store holds %d words that differ from the input's %d", len(stored), len(want))
	}
	m := p.Metrics()
	t.Logf("metrics: %+v", m)
	if got := m.Stages["split"].Records; got != int64(len(lines)) {
		t.Errorf("stage split committed %d records, want %d", got, len(lines))
	}
}

// TestIntegrationPurgeRepartition: records of the repartition topic that the
// downstream stage committed are deleted.
func TestIntegrationPurgeRepartition(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "purge")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 2, nil)
	testbroker.CreateTopic(t, brokers, output, 2, nil)
	lines, _, total := randomLines(2, 500, 50)
	produceLines(t, brokers, input, lines)
	p, err := New(wordcount(t, input, output), append(testOpts(t, brokers, app), PurgeInterval(100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	if got := waitRecords(t, brokers, output, total, time.Minute); got < total {
		t.Fatalf("output has %d of %d records", got, total)
	}
	repartition := app + "-by-word-repartition"
	adm := testbroker.Admin(t, brokers)
	deadline := time.Now().Add(30 * time.Second)
	for {
		starts, err := adm.ListStartOffsets(ctx, repartition)
		if err != nil {
			t.Fatal(err)
		}
		var purged int64
		starts.Each(func(o kadm.ListedOffset) { purged += o.Offset })
		if purged > 0 {
			t.Logf("purged %d records of %s", purged, repartition)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of %s was purged", repartition)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationShutdownLeavesGroups: a processor that stops leaves its
// groups (static members send no LeaveGroup on close), unless it was asked
// for a rolling restart.
func TestIntegrationShutdownLeavesGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	for _, rolling := range []bool{false, true} {
		t.Run(map[bool]string{false: "leave", true: "rolling restart"}[rolling], func(t *testing.T) {
			brokers := testbroker.Brokers(t)
			app := testbroker.Unique(t, "leave")
			input, output := app+"-lines", app+"-counts"
			testbroker.CreateTopic(t, brokers, input, 2, nil)
			testbroker.CreateTopic(t, brokers, output, 2, nil)
			produceLines(t, brokers, input, []string{"a b", "c"})
			opts := append(testOpts(t, brokers, app), InstanceID("member-1"))
			if rolling {
				opts = append(opts, RollingRestart())
			}
			p, err := New(wordcount(t, input, output), opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			if got := waitRecords(t, brokers, output, 3, time.Minute); got < 3 {
				t.Fatalf("output has %d of 3 records", got)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			adm := testbroker.Admin(t, brokers)
			groups, err := adm.DescribeGroups(context.Background(), app+"-split", app+"-by-word")
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range groups.Sorted() {
				members := len(g.Members)
				if rolling && members != 1 {
					t.Errorf("group %s has %d members after a rolling-restart shutdown, want the static member kept", g.Group, members)
				}
				if !rolling && members != 0 {
					t.Errorf("group %s still has %d members after shutdown (state %s)", g.Group, members, g.State)
				}
			}
		})
	}
}
