package processor

import (
	"context"
	"errors"
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

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
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

// Issue 9.6: records deleted under a restore (the log start offset passes
// its position after the plan) are never skipped silently. franz-go's
// default reset used to move the replay to the new log start: a resumed
// store kept k1 although its tombstone was among the deleted records. Now
// the replay errs on out of range and the restore starts over, rebuilding
// from the new log start.
func TestRestoreRebuildsWhenLogStartPassesIt(t *testing.T) {
	r := newRestoreRig(t, nil, nil)
	if testbroker.Real() {
		// Kafka refuses DeleteRecords on a compact-only topic.
		policy := "compact,delete"
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ar, err := r.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: &policy}}, r.changelog)
		if err == nil {
			_, err = ar.On(r.changelog, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r.commitTxn("k1=a", "k2=b") // offsets 0, 1; marker 2
	r.mustRestore("k1=a", "k2=b")
	if next := r.checkpoint().Stores["totals"].Next; next != 3 {
		t.Fatalf("checkpoint at %d, want 3", next)
	}
	r.commitTxn("k1=<nil>", "k3=c") // 3, 4; marker 5
	r.commitTxn("k4=d")             // 6; marker 7
	var once sync.Once
	testHookBetweenListings = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			os := kadm.Offsets{}
			os.Add(kadm.Offset{Topic: r.changelog, Partition: 0, At: 6})
			// A new client: the rig's cached the changelog's metadata
			// from before it existed.
			dr, err := testbroker.Admin(t, r.brokers).DeleteRecords(ctx, os)
			if err == nil {
				err = dr.Error()
			}
			if err != nil {
				t.Errorf("deleting records: %v", err)
			}
		})
	}
	t.Cleanup(func() { testHookBetweenListings = nil })
	rebuilds := r.st.metrics.rebuilds.Load()
	r.mustRestore("k4=d")
	if got := r.st.metrics.rebuilds.Load() - rebuilds; got != 1 {
		t.Errorf("%d rebuilds, want 1", got)
	}
}

// Issue 9.7: the changelog's topic id was read once at start, so a
// changelog deleted and recreated while the processor runs was not noticed
// by a later restore, which resumed the old checkpoint's offset in the new
// log. Each restore reads the id again, and rebuilds (the group has no
// committed input offsets here).
func TestRestoreSeesRecreatedChangelog(t *testing.T) {
	r := newRestoreRig(t, nil, nil)
	r.commitTxn("k1=a", "k2=b") // 0, 1; marker 2
	r.mustRestore("k1=a", "k2=b")
	r.recreateChangelog(nil)
	r.commitTxn("k3=c", "k4=d", "k5=e", "k6=f") // 0-3; marker 4: past the old checkpoint's 3
	r.mustRestore("k3=c", "k4=d", "k5=e", "k6=f")
	var zero [16]byte
	if id := r.checkpoint().Stores["totals"].TopicID; id == zero || id == r.st.stores[0].topicID {
		t.Errorf("checkpoint names topic id %x, want the new topic's (not %x)", id, r.st.stores[0].topicID)
	}
}

// commitInput commits an offset of the stage's group for the input's
// partition 0, as a processed record would.
func (r *restoreRig) commitInput(at int64) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: r.input, Partition: 0, At: at})
	resp, err := r.adm.CommitOffsets(ctx, r.st.group, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		r.t.Fatalf("committing input offsets: %v", err)
	}
}

// Issue 14.5: a changelog recreated while the stage's group has committed
// input offsets would restart the store from the new, nearly empty log
// while the inputs stay consumed (aggregates from zero). The restore
// refuses with a *ChangelogRecreatedError wrapping ErrConfig, unless
// AllowChangelogRecreate.
func TestRestoreRefusesRecreatedChangelog(t *testing.T) {
	for _, allow := range []bool{false, true} {
		name := "refused"
		var opts []Opt
		if allow {
			name = "AllowChangelogRecreate"
			opts = append(opts, AllowChangelogRecreate())
		}
		t.Run(name, func(t *testing.T) {
			r := newRestoreRig(t, nil, nil, opts...)
			r.commitTxn("k1=a", "k2=b")
			r.mustRestore("k1=a", "k2=b")
			r.commitInput(5)
			r.recreateChangelog(nil)
			r.commitTxn("k3=c")
			got, err := r.restore(time.Minute)
			if allow {
				if err != nil || !slices.Equal(got, []string{"k3=c"}) {
					t.Fatalf("restore = %v, %v; want a rebuild holding k3=c", got, err)
				}
				return
			}
			var rerr *ChangelogRecreatedError
			if !errors.As(err, &rerr) || !errors.Is(err, ErrConfig) {
				t.Fatalf("restore = %v, %v; want a *ChangelogRecreatedError wrapping ErrConfig", got, err)
			}
			if rerr.Topic != r.changelog || rerr.Group != r.st.group || !strings.Contains(err.Error(), "AllowChangelogRecreate") {
				t.Errorf("error %q does not name the topic %s, the group %s and the way out", err, r.changelog, r.st.group)
			}
			// The local state is untouched: nothing was wiped.
			if cp := r.checkpoint(); cp.Stores["totals"].Next != 3 {
				t.Errorf("checkpoint %+v changed", cp)
			}
		})
	}
}

// Issue 13.5: delete.retention.ms=0 read as "unknown", so the checkpoint's
// age never counted and a restore resumed past tombstones compaction may
// have removed at once. Now it rebuilds, and so does a restore that cannot
// read the setting (fail closed).
func TestRestoreDeleteRetentionZeroOrUnknownRebuilds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kfake bool
	}{{"delete.retention.ms=0", false}, {"DescribeConfigs fails", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var kf *kfake.Cluster
			if tc.kfake {
				kf = testbroker.NewKfake(t)
			}
			r := newRestoreRig(t, kf, func(r *restoreRig) {
				if tc.kfake {
					return
				}
				cfg := changelogConfigs()
				cfg["delete.retention.ms"] = ptr("0")
				testbroker.CreateTopic(t, r.brokers, r.changelog, 1, cfg)
			})
			r.commitTxn("k1=a", "k2=b")
			r.mustRestore("k1=a", "k2=b")
			if tc.kfake {
				kf.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
					kf.KeepControl()
					dreq := req.(*kmsg.DescribeConfigsRequest)
					resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
					for _, res := range dreq.Resources {
						rr := kmsg.NewDescribeConfigsResponseResource()
						rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
						rr.ErrorCode = 29 // TOPIC_AUTHORIZATION_FAILED
						resp.Resources = append(resp.Resources, rr)
					}
					return resp, nil, true
				})
			}
			r.commitTxn("k1=<nil>", "k3=c")
			rebuilds := r.st.metrics.rebuilds.Load()
			r.mustRestore("k2=b", "k3=c")
			if got := r.st.metrics.rebuilds.Load() - rebuilds; got != 1 {
				t.Errorf("%d rebuilds, want 1 (fail closed)", got)
			}
		})
	}
}

// Issue 14.3: the checkpoint a restore writes part-way (every
// restoreFlushBytes) was stamped with the time of the flush, although the
// records past it were written since the checkpoint the restore resumed
// from. 25 h after that checkpoint (delete.retention.ms 24 h), Plan then
// trusted the progress offset and resumed past tombstones compaction may
// have removed. The progress checkpoint now carries the resumed
// checkpoint's time.
func TestRestoreProgressCheckpointKeepsOriginalTime(t *testing.T) {
	kf := testbroker.NewKfake(t)
	defer func(n int) { restoreFlushBytes = n }(restoreFlushBytes)
	restoreFlushBytes = 1 // a progress checkpoint after every record
	// One batch per fetch, so the restore can be stopped half-way.
	r := newRestoreRig(t, kf, nil, KafkaOptions(kgo.FetchMaxPartitionBytes(1)))
	t0 := r.clock
	r.commitTxn("k1=a") // 0; marker 1
	r.mustRestore("k1=a")
	if cp := r.checkpoint(); !cp.Written.Equal(t0) || cp.Stores["totals"].Next != 2 {
		t.Fatalf("checkpoint %+v, want offset 2 written at %v", cp, t0)
	}
	for _, kv := range []string{"k2=b", "k1=<nil>", "k3=c", "k4=d"} {
		r.commitTxn(kv) // 2, 4, 6, 8; markers 3, 5, 7, 9
	}

	// Two hours later a restore stops after its third fetch.
	r.setClock(t0.Add(2 * time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var mu sync.Mutex
	fetches := 0
	kf.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		mu.Lock()
		defer mu.Unlock()
		if fetches++; fetches == 4 {
			cancel()
		}
		return nil, nil, false
	})
	if _, err := r.restoreCtx(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("restore = %v, want it interrupted", err)
	}
	kf.DropControl()
	cp := r.checkpoint()
	if next := cp.Stores["totals"].Next; next <= 2 || next >= 10 {
		t.Fatalf("no progress checkpoint: %+v", cp)
	}
	if !cp.Written.Equal(t0) {
		t.Errorf("progress checkpoint at offset %d written at %v, want %v (the time of the checkpoint it resumed from)", cp.Stores["totals"].Next, cp.Written, t0)
	}

	// 25 hours after the first checkpoint, delete.retention.ms (24 h) has
	// passed: the next restore must not trust the progress offset.
	r.setClock(t0.Add(25 * time.Hour))
	rebuilds := r.st.metrics.rebuilds.Load()
	r.mustRestore("k2=b", "k3=c", "k4=d")
	if got := r.st.metrics.rebuilds.Load() - rebuilds; got != 1 {
		t.Errorf("%d rebuilds 25 h after the checkpoint, want 1", got)
	}
}
