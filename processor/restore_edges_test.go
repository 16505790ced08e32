package processor

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/checkpoint"
	"github.com/sluicehq/sluice/internal/testbroker"
	"github.com/sluicehq/sluice/state"
)

// restoreRig is the counting stage of counterTopology (one input
// partition, store "totals") with its topics prepared, an open Pebble
// state and a settable clock, so that tests drive its restores directly
// and write its changelog by hand.
type restoreRig struct {
	t         *testing.T
	brokers   []string
	p         *Processor
	st        *stage
	db        *state.DB
	adm       *kadm.Client
	input     string
	changelog string

	mu    sync.Mutex
	clock time.Time
}

// newRestoreRig prepares the rig against kf, or against the test broker
// when kf is nil. before, when set, runs after the topology is known and
// before the topics are prepared (to create an internal topic by hand).
func newRestoreRig(t *testing.T, kf *kfake.Cluster, before func(r *restoreRig), opts ...Opt) *restoreRig {
	t.Helper()
	var brokers []string
	if kf != nil {
		brokers = kf.ListenAddrs()
	} else {
		brokers = testbroker.Brokers(t)
	}
	app := testbroker.Unique(t, "restore")
	r := &restoreRig{t: t, brokers: brokers, input: app + "-in", clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	testbroker.CreateTopic(t, brokers, r.input, 1, nil)
	testbroker.CreateTopic(t, brokers, app+"-out", 1, nil)
	p, err := New(counterTopology(t, r.input, app+"-out", ""), append(testOpts(t, brokers, app), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	p.now = func() time.Time {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.clock
	}
	r.db, err = state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.db.Close() })
	r.p, r.st = p, p.stages[0]
	r.st.db = r.db
	r.changelog = r.st.stores[0].topic
	r.adm = testbroker.Admin(t, brokers)
	if before != nil {
		before(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.prepareTopics(ctx, r.adm); err != nil {
		t.Fatalf("prepareTopics: %v", err)
	}
	return r
}

// setClock sets the processor's clock.
func (r *restoreRig) setClock(t time.Time) {
	r.mu.Lock()
	r.clock = t
	r.mu.Unlock()
}

// txnProducer returns a transactional producer to partition 0 of the
// changelog.
func (r *restoreRig) txnProducer() *kgo.Client {
	return testbroker.NewClient(r.t, r.brokers,
		kgo.TransactionalID(testbroker.Unique(r.t, "writer")),
		kgo.TransactionTimeout(10*time.Second),
		kgo.DefaultProduceTopic(r.changelog),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
}

// changelogRecords turns "k=v" into records of partition 0; "k=<nil>" is a
// tombstone.
func changelogRecords(kvs []string) []*kgo.Record {
	var recs []*kgo.Record
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		rec := &kgo.Record{Key: []byte(k), Partition: 0}
		if v != "<nil>" {
			rec.Value = []byte(v)
		}
		recs = append(recs, rec)
	}
	return recs
}

// openTxn produces kvs to the changelog in a transaction it leaves open,
// and returns the function that ends it.
func (r *restoreRig) openTxn(kvs ...string) (end func(commit bool)) {
	r.t.Helper()
	cl := r.txnProducer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.BeginTransaction(); err != nil {
		r.t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, changelogRecords(kvs)...).FirstErr(); err != nil {
		r.t.Fatalf("producing to %s: %v", r.changelog, err)
	}
	return func(commit bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			r.t.Errorf("ending the transaction: %v", err)
		}
	}
}

// commitTxn produces kvs to the changelog in one committed transaction.
func (r *restoreRig) commitTxn(kvs ...string) {
	r.t.Helper()
	r.openTxn(kvs...)(true)
}

// restore restores the task of partition 0 within timeout and returns its
// store's content as sorted "k=v".
func (r *restoreRig) restore(timeout time.Duration) ([]string, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.restoreCtx(ctx)
}

func (r *restoreRig) restoreCtx(ctx context.Context) ([]string, error) {
	r.t.Helper()
	tasks, err := r.st.restore(ctx, []int32{0})
	if err != nil {
		return nil, err
	}
	got := scanAll(r.t, tasks[0], "totals")
	slices.Sort(got)
	return got, nil
}

// mustRestore is restore that fails the test on error and compares the
// store with want.
func (r *restoreRig) mustRestore(want ...string) {
	r.t.Helper()
	got, err := r.restore(time.Minute)
	if err != nil {
		r.t.Fatalf("restore: %v", err)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		r.t.Fatalf("after the restore the store holds %v, want %v", got, want)
	}
}

// checkpoint returns the task's checkpoint.
func (r *restoreRig) checkpoint() checkpoint.Checkpoint {
	r.t.Helper()
	cp, found, err := r.db.Checkpoint(state.TaskID{Stage: r.st.name, Partition: 0})
	if err != nil || !found {
		r.t.Fatalf("checkpoint: found %v, %v", found, err)
	}
	return cp
}

// recreateChangelog deletes the changelog topic and creates it again
// (compacted, one partition).
func (r *restoreRig) recreateChangelog(configs map[string]*string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.adm.DeleteTopics(ctx, r.changelog); err != nil {
		r.t.Fatal(err)
	}
	if configs == nil {
		configs = changelogConfigs()
	}
	waitFor(r.t, time.Minute, "the changelog to be created again", func() bool {
		resp, err := r.adm.CreateTopic(ctx, 1, -1, configs, r.changelog)
		return err == nil && resp.Err == nil
	})
	waitFor(r.t, time.Minute, "the new changelog's metadata", func() bool {
		md, err := r.adm.Metadata(ctx, r.changelog)
		return err == nil && md.Topics[r.changelog].Err == nil && len(md.Topics[r.changelog].Partitions) == 1
	})
}

// Issue 9.2: the high watermark and the last stable offset are listed in
// two requests. When the previous owner's open transaction aborts between
// the two, the target is the old high watermark and the abort marker sits
// at it: the restore used to skip records at or past the target without
// counting the partition done, and waited forever for an offset below it.
func TestRestoreEndsAtAbortMarkerAtTarget(t *testing.T) {
	r := newRestoreRig(t, nil, nil)
	r.commitTxn("k1=a", "k2=b")
	end := r.openTxn("k3=zombie", "k1=zombie")
	var once sync.Once
	testHookBetweenListings = func() { once.Do(func() { end(false) }) }
	t.Cleanup(func() { testHookBetweenListings = nil })

	got, err := r.restore(20 * time.Second)
	if err != nil {
		t.Fatalf("restore with an abort marker at its target: %v", err)
	}
	if want := []string{"k1=a", "k2=b"}; !slices.Equal(got, want) {
		t.Fatalf("store %v, want %v", got, want)
	}
}

// A restore never waits forever: a replay that receives nothing for
// restoreStall fails (and franz-go restores again after a rejoin).
func TestRestoreFailsWhenStalled(t *testing.T) {
	kf := testbroker.NewKfake(t)
	r := newRestoreRig(t, kf, nil)
	r.commitTxn("k1=a")
	defer func(d time.Duration) { restoreStall = d }(restoreStall)
	restoreStall = time.Second
	// From now on every fetch hangs until the cluster closes.
	kf.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		kf.SleepControl(func() { time.Sleep(3 * time.Second) })
		return nil, nil, false
	})
	start := time.Now()
	_, err := r.restore(30 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "received no changelog record") {
		t.Fatalf("restore = %v, want the stall error", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the stalled restore failed after %v", took)
	}
}
