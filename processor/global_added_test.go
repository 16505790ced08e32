package processor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// Partitions added to a global table's topic while the processor runs
// (globalTable.refresh): the copy reads them from their listed log start,
// and waits for the next refresh when the listing fails.

// addedGlobal is a processor running globalOrders on kfake, with a global
// table (users) of one partition to which the tests add partitions. Its
// refresh runs every 100 ms, and the users topic's ListOffsets requests can
// be made to fail: all of its latest-offset listings while holdEnds is set
// (a refresh then cannot see partitions added meanwhile), all of its
// earliest-offset listings while failStarts is set.
type addedGlobal struct {
	kf                  *kfake.Cluster
	brokers             []string
	orders, users, out  string
	adm                 *kadm.Client
	p                   *running
	outs                int // records the stage has written to out so far
	holdEnds, failStart atomic.Bool
	endsFailed          atomic.Int32 // latest-offset listings of users failed
	startsFailed        atomic.Int32 // earliest-offset listings of users failed
	startsListed        atomic.Int32 // earliest-offset listings of users answered
}

func startAddedGlobal(t *testing.T, prefix string) *addedGlobal {
	t.Helper()
	f := &addedGlobal{kf: testbroker.NewKfake(t)}
	f.brokers = f.kf.ListenAddrs()
	app := testbroker.Unique(t, prefix)
	f.orders, f.users, f.out = app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, f.brokers, f.orders, 1, nil)
	testbroker.CreateTopic(t, f.brokers, f.users, 1, nil)
	testbroker.CreateTopic(t, f.brokers, f.out, 1, nil)
	f.adm = testbroker.Admin(t, f.brokers)
	produceGlobal(t, f.brokers, f.users, "ann=de")

	// Restored after the processor stops (cleanups run last in, first
	// out), so that no follower reads it while it is written.
	old := globalRefreshInterval
	globalRefreshInterval = 100 * time.Millisecond
	t.Cleanup(func() { globalRefreshInterval = old })

	f.kf.ControlKey(int16(kmsg.ListOffsets), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.ListOffsetsRequest)
		if len(req.Topics) != 1 || req.Topics[0].Topic != f.users || len(req.Topics[0].Partitions) == 0 {
			return nil, nil, false
		}
		switch req.Topics[0].Partitions[0].Timestamp {
		case -1:
			if !f.holdEnds.Load() {
				return nil, nil, false
			}
			f.endsFailed.Add(1)
		case -2:
			if !f.failStart.Load() {
				f.startsListed.Add(1)
				return nil, nil, false
			}
			f.startsFailed.Add(1)
		default:
			return nil, nil, false
		}
		f.kf.KeepControl()
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		resp.Version = req.Version
		rt := kmsg.NewListOffsetsResponseTopic()
		rt.Topic = f.users
		for _, rp := range req.Topics[0].Partitions {
			p := kmsg.NewListOffsetsResponseTopicPartition()
			p.Partition = rp.Partition
			p.ErrorCode = kerr.UnknownServerError.Code
			rt.Partitions = append(rt.Partitions, p)
		}
		resp.Topics = append(resp.Topics, rt)
		return resp, nil, true
	})

	f.p = startProcessor(t, globalOrders(t, f.orders, f.users, f.out), testOpts(t, f.brokers, app)...)
	// Bootstrapped and running: an order is joined with the table.
	if got := f.join(t, "o-ann=ann"); got["o-ann"] != "ann@de" {
		t.Fatalf("o-ann=%q, want ann@de", got["o-ann"])
	}
	return f
}

// alive fails the test with Run's error when the processor has stopped.
func (f *addedGlobal) alive(t *testing.T) {
	t.Helper()
	select {
	case err := <-f.p.done:
		close(f.p.done) // running.stop sees it closed
		t.Fatalf("the processor stopped: Run = %v", err)
	default:
	}
}

// waitUntil waits for cond, failing the test when the processor stops or
// after a generous timeout.
func (f *addedGlobal) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		f.alive(t)
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (global metrics %+v)", what, f.p.Metrics().Global["users"])
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.alive(t)
}

// join produces orders (id=user) and returns the whole output once the
// stage has written them: id -> user@country, user@? when the table has no
// such user.
func (f *addedGlobal) join(t *testing.T, orders ...string) map[string]string {
	t.Helper()
	produceGlobal(t, f.brokers, f.orders, orders...)
	f.outs += len(orders)
	if got := waitRecords(t, f.brokers, f.out, f.outs, 2*time.Minute); got < f.outs {
		f.alive(t)
		t.Fatalf("output has %d of %d records", got, f.outs)
	}
	got, _ := readOut(t, f.brokers, f.out)
	return got
}

// addPartitions adds n partitions to the users topic.
func (f *addedGlobal) addPartitions(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := f.adm.CreatePartitions(ctx, n, f.users)
	if err == nil {
		err = rs.Error()
	}
	if err != nil {
		t.Fatalf("adding %d partitions to %s: %v", n, f.users, err)
	}
}

// produceTo produces key=value records to one partition of the users topic.
func (f *addedGlobal) produceTo(t *testing.T, partition int32, kvs ...string) {
	t.Helper()
	cl := testbroker.NewClient(t, f.brokers, kgo.DefaultProduceTopic(f.users), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte(v), Partition: partition})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s/%d: %v", f.users, partition, err)
	}
}

// deleteBefore deletes the records of a users partition before offset,
// moving its log start there.
func (f *addedGlobal) deleteBefore(t *testing.T, partition int32, offset int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: f.users, Partition: partition, At: offset})
	dr, err := f.adm.DeleteRecords(ctx, os)
	if err == nil {
		err = dr.Error()
	}
	if err != nil {
		t.Fatalf("deleting records of %s/%d before %d: %v", f.users, partition, offset, err)
	}
	starts, err := f.adm.ListStartOffsets(ctx, f.users)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := starts.Lookup(f.users, partition); s.Offset != offset {
		t.Fatalf("log start of %s/%d is %d after DeleteRecords, want %d", f.users, partition, s.Offset, offset)
	}
}

// checkJoined compares the joined orders of got with want.
func checkJoined(t *testing.T, got, want map[string]string) {
	t.Helper()
	var bad []string
	for id, w := range want {
		if got[id] != w {
			bad = append(bad, fmt.Sprintf("%s=%q (want %q)", id, got[id], w))
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("joined orders: %s", strings.Join(bad, ", "))
	}
}

// stop stops the processor, failing the test on Run's error.
func (f *addedGlobal) stop(t *testing.T) {
	t.Helper()
	if err := f.p.stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// Records produced to partitions added to the topic while the processor
// runs reach the global table, as do later records of its first partition.
func TestGlobalTableReadsAddedPartitions(t *testing.T) {
	f := startAddedGlobal(t, "global-added")
	f.addPartitions(t, 2)
	f.produceTo(t, 1, "bob=fr")
	f.produceTo(t, 2, "cid=it", "dan=us")
	f.produceTo(t, 0, "ann=at")
	f.waitUntil(t, "the copy to apply the 4 records", func() bool { return f.p.Metrics().Global["users"].Updates >= 4 })
	got := f.join(t, "o-bob=bob", "o-cid=cid", "o-dan=dan", "o-ann2=ann", "o-eve=eve")
	checkJoined(t, got, map[string]string{"o-bob": "bob@fr", "o-cid": "cid@it", "o-dan": "dan@us", "o-ann2": "ann@at", "o-eve": "eve@?"})
	f.stop(t)
}

// addDeleted adds a partition to the users topic without a refresh seeing
// it until it holds gone1 and gone2 (deleted: its log start is 2) and eve,
// and returns with the refresh's end listings still held.
func (f *addedGlobal) addDeleted(t *testing.T) {
	t.Helper()
	f.holdEnds.Store(true)
	// A refresh that listed the ends before the hold may still add the
	// partition: wait for two held listings, so that one began after it.
	n := f.endsFailed.Load()
	f.waitUntil(t, "the refresh's end listings to be held", func() bool { return f.endsFailed.Load() >= n+2 })
	f.addPartitions(t, 1)
	f.produceTo(t, 1, "gone1=x", "gone2=y", "eve=se")
	f.deleteBefore(t, 1, 2)
}

// A partition added to the topic whose log start is past 0 is read from
// there: the copy gets the records after the start, none before it, and the
// processor goes on.
func TestGlobalTableReadsAddedPartitionFromLogStart(t *testing.T) {
	f := startAddedGlobal(t, "global-added-start")
	f.addDeleted(t)
	f.holdEnds.Store(false)
	f.waitUntil(t, "the copy to apply eve", func() bool { return f.p.Metrics().Global["users"].Updates >= 1 })
	got := f.join(t, "o-eve=eve", "o-gone1=gone1", "o-gone2=gone2")
	checkJoined(t, got, map[string]string{"o-eve": "eve@se", "o-gone1": "gone1@?", "o-gone2": "gone2@?"})
	if u := f.p.Metrics().Global["users"].Updates; u != 1 {
		t.Errorf("the copy applied %d records while following, want 1 (eve, after the log start)", u)
	}
	f.stop(t)
}

// When listing the start offsets for an added partition fails, the refresh
// does not read it from offset 0 (before its log start: out of range, which
// stops the processor) but lists again at the next refresh, and the records
// after the start still arrive.
func TestGlobalTableAddedPartitionStartListingFails(t *testing.T) {
	f := startAddedGlobal(t, "global-added-fail")
	f.addDeleted(t)
	f.failStart.Store(true)
	f.holdEnds.Store(false)
	// Refreshes list the start offsets again and again while the listing
	// fails; a few of them give a read from offset 0, had one begun, time
	// to stop the processor (waitUntil fails the test then).
	f.waitUntil(t, "five refreshes to fail listing the start offsets", func() bool { return f.startsFailed.Load() >= 5 })
	if u := f.p.Metrics().Global["users"].Updates; u != 0 {
		t.Errorf("the copy applied %d records while the added partition's start was unknown, want 0", u)
	}
	listed := f.startsListed.Load()
	f.failStart.Store(false)
	f.waitUntil(t, "the copy to apply eve", func() bool { return f.p.Metrics().Global["users"].Updates >= 1 })
	if f.startsListed.Load() == listed {
		t.Errorf("the copy read the added partition without listing its start offset again")
	}
	got := f.join(t, "o-eve=eve", "o-gone1=gone1", "o-gone2=gone2")
	checkJoined(t, got, map[string]string{"o-eve": "eve@se", "o-gone1": "gone1@?", "o-gone2": "gone2@?"})
	if u := f.p.Metrics().Global["users"].Updates; u != 1 {
		t.Errorf("the copy applied %d records while following, want 1 (eve, after the log start)", u)
	}
	f.stop(t)
}
