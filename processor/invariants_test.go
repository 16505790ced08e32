package processor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// counterTopology is a one-stage topology: for every input record it
// increments the key's count in the store "totals" and emits the new count.
// A value "boom" makes the function return an error, "panic" makes it panic,
// and a value starting with "echo:" is also emitted as is to echo (when echo
// is not empty).
func counterTopology(t testing.TB, input, output, echo string) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	totals := stream.DeclareStore(b, "totals", codec.String{}, codec.Int64{})
	out := stream.DeclareOutput(b, output, codec.String{}, codec.Int64Text{})
	opts := []stream.ProcessOption{stream.Uses(totals), stream.EmitsTo(out), stream.Named("counter")}
	var echoOut stream.OutputRef[string, string]
	if echo != "" {
		echoOut = stream.DeclareOutput(b, echo, codec.String{}, codec.String{})
		opts = append(opts, stream.EmitsTo(echoOut))
	}
	src := stream.Source(b, input, codec.String{}, codec.String{}, stream.Named("count"))
	stream.Process(src, func(h *stream.Handle, r stream.Record[string, string]) error {
		switch {
		case r.Value == "boom":
			return errors.New("boom record")
		case r.Value == "panic":
			panic("user code panicked")
		case echo != "" && strings.HasPrefix(r.Value, "echo:"):
			if err := stream.Emit(h, echoOut, r.Key, r.Value); err != nil {
				return err
			}
		}
		n, _, err := stream.Get(h, totals, r.Key)
		if err != nil {
			return err
		}
		if err := stream.Put(h, totals, r.Key, n+1); err != nil {
			return err
		}
		return stream.Emit(h, out, r.Key, n+1)
	}, opts...)
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// fixture is one test's topics and application.
type fixture struct {
	t              testing.TB
	brokers        []string
	app            string
	input, output  string
	stateDir       string
	partitions     int32
	changelogTopic string
}

func newFixture(t testing.TB, partitions int32) *fixture {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "inv")
	f := &fixture{t: t, brokers: brokers, app: app, input: app + "-in", output: app + "-out",
		stateDir: t.TempDir(), partitions: partitions, changelogTopic: topology.ChangelogTopic(app, "totals")}
	testbroker.CreateTopic(t, brokers, f.input, partitions, nil)
	testbroker.CreateTopic(t, brokers, f.output, partitions, nil)
	return f
}

func (f *fixture) opts(extra ...Opt) []Opt {
	o := testOpts(f.t, f.brokers, f.app)
	o = append(o, StateDir(f.stateDir))
	return append(o, extra...)
}

// produce writes key=value records ("k=v") to the input, in order, to
// partition 0 unless the key decides.
func (f *fixture) produce(kvs ...string) {
	f.t.Helper()
	cl := testbroker.NewClient(f.t, f.brokers, kgo.DefaultProduceTopic(f.input), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	recs := make([]*kgo.Record, len(kvs))
	for i, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		recs[i] = &kgo.Record{Key: []byte(k), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		f.t.Fatal(err)
	}
}

// run runs a processor until until returns true (or it stops by itself) and
// returns Run's error.
func (f *fixture) run(p *Processor, until func() bool, timeout time.Duration) error {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.After(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-deadline:
			cancel()
			err := <-done
			f.t.Fatalf("processor did not reach its goal within %v (Run: %v)", timeout, err)
		case <-tick.C:
			if until() {
				cancel()
				return <-done
			}
		}
	}
}

// committedRecords returns the records of the stage's input committed by its
// group, summed over partitions.
func (f *fixture) committedOffsets(stage string) map[int32]int64 {
	f.t.Helper()
	adm := testbroker.Admin(f.t, f.brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsets(ctx, f.app+"-"+stage)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}
	}
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[int32]int64{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Topic == f.input && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// assertStateMatchesChangelog checks the invariant "Pebble state == replay of
// the committed changelog up to the checkpoint" for every task of a stage's
// store. The processor must be stopped.
func (f *fixture) assertStateMatchesChangelog(stage, store string) map[int32]map[string]string {
	f.t.Helper()
	db, err := state.Open(filepath.Join(f.stateDir, f.app))
	if err != nil {
		f.t.Fatal(err)
	}
	defer db.Close()
	topic := topology.ChangelogTopic(f.app, store)
	all := map[int32]map[string]string{}
	for p := int32(0); p < f.partitions; p++ {
		local := map[string]string{}
		txn := db.NewTxn()
		err := txn.Store(store, p).Scan(nil, nil, func(k, v []byte) error {
			local[string(k)] = string(v)
			return nil
		})
		txn.Discard()
		if err != nil {
			f.t.Fatal(err)
		}
		all[p] = local
		cp, found, err := db.Checkpoint(state.TaskID{Stage: stage, Partition: p})
		if err != nil {
			f.t.Fatal(err)
		}
		next := cp.Stores[store].Next
		if !found || next == 0 {
			if len(local) != 0 {
				f.t.Errorf("task %s/%d has %d keys but no checkpoint", stage, p, len(local))
			}
			continue
		}
		replay := map[string]string{}
		for _, r := range f.readPartition(topic, p, next) {
			if r.Value == nil {
				delete(replay, string(r.Key))
			} else {
				replay[string(r.Key)] = string(r.Value)
			}
		}
		if fmt.Sprint(replay) != fmt.Sprint(local) {
			f.t.Errorf("task %s/%d: Pebble state differs from the changelog replayed to its checkpoint %d:\nlocal  %v\nreplay %v", stage, p, next, local, replay)
		}
	}
	return all
}

// readPartition reads one partition with read_committed up to (not
// including) offset end.
func (f *fixture) readPartition(topic string, p int32, end int64) []*kgo.Record {
	f.t.Helper()
	cl := testbroker.NewClient(f.t, f.brokers,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	starts, err := testbroker.Admin(f.t, f.brokers).ListStartOffsets(ctx, topic)
	if err != nil {
		f.t.Fatal(err)
	}
	start, _ := starts.Lookup(topic, p)
	pos := start.Offset
	for pos < end {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			f.t.Fatalf("reading %s/%d: reached %d of %d", topic, p, pos, end)
		}
		for it := fs.RecordIter(); !it.Done(); {
			r := it.Next()
			if r.Offset >= end {
				continue
			}
			pos = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		}
	}
	return out
}

// incompressible returns n random letters: the producer compresses
// batches, and a repeated letter would shrink below any size limit.
func incompressible(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(rand.IntN(26))
	}
	return string(b)
}

func records(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("k%d=%s%d", i%5, prefix, i)
	}
	return out
}

// TestFailPolicyCommitsNothingPastTheRecord: a record whose function fails
// stops the stage with an error naming topic, partition and offset, the
// transaction holding it aborts as a whole, and neither Kafka nor Pebble
// holds anything past the committed offset.
func TestIntegrationFailPolicyCommitsNothingPastTheRecord(t *testing.T) {
	for _, bad := range []string{"boom", "panic"} {
		t.Run(bad, func(t *testing.T) {
			f := newFixture(t, 1)
			in := records("v", 200)
			in[120] = "k0=" + bad
			f.produce(in...)
			p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(CommitInterval(time.Second), MaxRecordsPerTransaction(50))...)
			if err != nil {
				t.Fatal(err)
			}
			err = f.run(p, func() bool { return false }, time.Minute)
			var rerr *RecordError
			if !errors.As(err, &rerr) {
				t.Fatalf("Run returned %v, want a *RecordError", err)
			}
			if rerr.Topic != f.input || rerr.Partition != 0 || rerr.Offset != 120 {
				t.Errorf("error names %s/%d@%d, want %s/0@120", rerr.Topic, rerr.Partition, rerr.Offset, f.input)
			}
			if bad == "panic" {
				var perr *PanicError
				if !errors.As(err, &perr) || !strings.Contains(err.Error(), "user code panicked") {
					t.Errorf("error %v does not carry the panic", err)
				}
			}
			committed := f.committedOffsets("count")[0]
			if committed != 100 {
				t.Errorf("committed offset %d, want 100 (two transactions of 50; the third, holding the bad record, aborted)", committed)
			}
			out := testbroker.ReadCommitted(t, f.brokers, f.output)
			if len(out) != int(committed) {
				t.Errorf("output holds %d records for %d committed inputs", len(out), committed)
			}
			state := f.assertStateMatchesChangelog("count", "totals")
			var sum int64
			for _, v := range state[0] {
				n, _ := codec.Int64{}.Decode([]byte(v))
				sum += n
			}
			if sum != committed {
				t.Errorf("Pebble counts %d records, want %d: an aborted transaction reached the store", sum, committed)
			}
		})
	}
}

// TestSkipPolicy: bad records are counted and skipped; the good records
// around them are committed exactly once.
func TestIntegrationSkipPolicy(t *testing.T) {
	f := newFixture(t, 1)
	in := records("v", 100)
	in[10], in[50], in[99] = "k0=boom", "k0=panic", "k4=boom"
	f.produce(in...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(ErrorPolicy(Skip))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p, func() bool { return p.Metrics().Stages["count"].Records == 100 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := p.Metrics().Stages["count"].Skipped; got != 3 {
		t.Errorf("skipped %d records, want 3", got)
	}
	last := map[string]int{}
	for _, r := range testbroker.ReadCommitted(t, f.brokers, f.output) {
		n, _ := strconv.Atoi(string(r.Value))
		if n != last[string(r.Key)]+1 {
			t.Errorf("key %s: count %d after %d", r.Key, n, last[string(r.Key)])
		}
		last[string(r.Key)] = n
	}
	want := map[string]int{"k0": 18, "k1": 20, "k2": 20, "k3": 20, "k4": 19}
	if fmt.Sprint(last) != fmt.Sprint(want) {
		t.Errorf("final counts %v, want %v", last, want)
	}
	f.assertStateMatchesChangelog("count", "totals")
}

// TestOversizedOutput: an output larger than MaxRecordBytes goes to the error
// policy instead of failing the transaction.
func TestIntegrationOversizedOutput(t *testing.T) {
	for _, pol := range []Policy{Fail, Skip} {
		t.Run(pol.String(), func(t *testing.T) {
			f := newFixture(t, 1)
			echo := f.app + "-echo"
			testbroker.CreateTopic(t, f.brokers, echo, 1, nil)
			f.produce("k1=echo:small", "k1=echo:"+strings.Repeat("x", 3000), "k2=v")
			p, err := New(counterTopology(t, f.input, f.output, echo), f.opts(MaxRecordBytes(2000), ErrorPolicy(pol))...)
			if err != nil {
				t.Fatal(err)
			}
			err = f.run(p, func() bool { return p.Metrics().Stages["count"].Records == 3 }, time.Minute)
			switch pol {
			case Fail:
				var rerr *RecordError
				if !errors.As(err, &rerr) || !errors.Is(err, ErrRecordTooLarge) || rerr.Offset != 1 {
					t.Fatalf("Run: %v, want a *RecordError at offset 1 wrapping ErrRecordTooLarge", err)
				}
			case Skip:
				if err != nil {
					t.Fatal(err)
				}
				if got := len(testbroker.ReadCommitted(t, f.brokers, echo)); got != 1 {
					t.Errorf("echo holds %d records, want 1", got)
				}
				if got := len(testbroker.ReadCommitted(t, f.brokers, f.output)); got != 2 {
					t.Errorf("output holds %d records, want 2", got)
				}
			}
			f.assertStateMatchesChangelog("count", "totals")
		})
	}
}

// TestFailedProduceAbortsTheTransaction: a produce the broker rejects (the
// topic's max.message.bytes is below the record) aborts the whole cycle: no
// offset, no output, no state.
func TestIntegrationFailedProduceAbortsTheTransaction(t *testing.T) {
	f := newFixture(t, 1)
	echo := f.app + "-echo"
	small := "1500"
	testbroker.CreateTopic(t, f.brokers, echo, 1, map[string]*string{"max.message.bytes": &small})
	f.produce("k1=a", "k2=b", "k1=echo:"+incompressible(3000), "k3=c")
	p, err := New(counterTopology(t, f.input, f.output, echo), f.opts(CommitInterval(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	err = f.run(p, func() bool { return false }, time.Minute)
	if !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("Run: %v, want an error wrapping MESSAGE_TOO_LARGE", err)
	}
	if got := f.committedOffsets("count"); len(got) != 0 {
		t.Errorf("committed offsets %v after a failed produce, want none", got)
	}
	if got := testbroker.ReadCommitted(t, f.brokers, f.output); len(got) != 0 {
		t.Errorf("output holds %d records of an aborted transaction", len(got))
	}
	if got := f.assertStateMatchesChangelog("count", "totals"); len(got[0]) != 0 {
		t.Errorf("Pebble holds %v after an aborted transaction", got[0])
	}
}

// TestRevokeAfterCommitStillApplies: partitions revoked after a transaction
// committed, but before its batch was applied, still get the batch applied
// with its checkpoint; the stage then recovers and stays exactly-once.
func TestIntegrationRevokeAfterCommitStillApplies(t *testing.T) {
	f := newFixture(t, 2)
	f.produce(records("v", 300)...)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(40))...)
	if err != nil {
		t.Fatal(err)
	}
	var fired, checked atomic.Bool
	p.hooks.afterCommit = func(st *stage) error {
		if fired.CompareAndSwap(false, true) {
			st.onRevoked(context.Background(), nil, map[string][]int32{f.input: {0, 1}})
		}
		return nil
	}
	p.hooks.afterApply = func(st *stage, applied []*task) {
		if checked.Load() || !fired.Load() {
			return
		}
		checked.Store(true)
		for _, tk := range applied {
			cp, found, err := st.db.Checkpoint(tk.id)
			if err != nil || !found || cp.Stores["totals"].Next == 0 {
				t.Errorf("task %v: revoked after commit, batch not applied (checkpoint %v found=%v err=%v)", tk.id, cp, found, err)
			}
		}
	}
	if err := f.run(p, func() bool { return p.Metrics().Stages["count"].Records >= 300 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !checked.Load() {
		t.Fatal("the hook never ran")
	}
	checkExactCounts(t, testbroker.ReadCommitted(t, f.brokers, f.output), map[string]int{"k0": 60, "k1": 60, "k2": 60, "k3": 60, "k4": 60})
	f.assertStateMatchesChangelog("count", "totals")
}

var errSimulatedCrash = errors.New("simulated crash between the Kafka commit and the Pebble apply")

// TestCrashBetweenCommitAndApply: the transaction committed on the broker
// but the process died before applying it to Pebble. On restart the restore
// replays the changelog from the (older) checkpoint and nothing is lost or
// duplicated.
func TestIntegrationCrashBetweenCommitAndApply(t *testing.T) {
	f := newFixture(t, 2)
	f.produce(records("a", 200)...)
	topo := counterTopology(t, f.input, f.output, "")
	p, err := New(topo, f.opts(MaxRecordsPerTransaction(30))...)
	if err != nil {
		t.Fatal(err)
	}
	var commits atomic.Int32
	p.hooks.afterCommit = func(*stage) error {
		if commits.Add(1) == 3 {
			return errSimulatedCrash
		}
		return nil
	}
	if err := f.run(p, func() bool { return false }, time.Minute); !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("Run: %v, want the simulated crash", err)
	}
	// The checkpoint must be behind what the changelog holds: the crash
	// really skipped an apply.
	f.assertStateMatchesChangelog("count", "totals")
	ends := f.changelogEnds()
	behind := false
	db, err := state.Open(filepath.Join(f.stateDir, f.app))
	if err != nil {
		t.Fatal(err)
	}
	for part, end := range ends {
		cp, _, _ := db.Checkpoint(state.TaskID{Stage: "count", Partition: part})
		if cp.Stores["totals"].Next < end-1 {
			behind = true
		}
	}
	db.Close()
	if !behind {
		t.Fatalf("no checkpoint is behind its changelog (ends %v): the simulated crash did not skip an apply", ends)
	}

	f.produce(records("b", 100)...)
	p2, err := New(topo, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p2, func() bool { return len(f.committedOffsets("count")) == 2 && sum(f.committedOffsets("count")) == 300 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if p2.Metrics().Stages["count"].RestoredRecords == 0 {
		t.Error("the restart replayed no changelog record")
	}
	checkExactCounts(t, testbroker.ReadCommitted(t, f.brokers, f.output), map[string]int{"k0": 60, "k1": 60, "k2": 60, "k3": 60, "k4": 60})
	f.assertStateMatchesChangelog("count", "totals")
}

func (f *fixture) changelogEnds() map[int32]int64 {
	adm := testbroker.Admin(f.t, f.brokers)
	ends, err := adm.ListEndOffsets(context.Background(), f.changelogTopic)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// checkExactCounts asserts per key counts 1..n and the final n.
func checkExactCounts(t testing.TB, recs []*kgo.Record, want map[string]int) {
	t.Helper()
	last := map[string]int{}
	for _, r := range recs {
		n, _ := strconv.Atoi(string(r.Value))
		if n != last[string(r.Key)]+1 {
			t.Errorf("key %s: count %d after %d (a duplicate or a gap)", r.Key, n, last[string(r.Key)])
		}
		last[string(r.Key)] = n
	}
	if fmt.Sprint(last) != fmt.Sprint(want) {
		t.Errorf("final counts %v, want %v", last, want)
	}
}

// TestRebuild: a checkpoint from a recreated changelog topic (another topic
// id), or below the changelog's log start offset, makes the restore wipe the
// task and rebuild it from the changelog's start.
func TestIntegrationRebuild(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(f *fixture)
	}{
		{"recreated changelog", func(f *fixture) {
			adm := testbroker.Admin(f.t, f.brokers)
			ctx := context.Background()
			if _, err := adm.DeleteTopics(ctx, f.changelogTopic); err != nil {
				f.t.Fatal(err)
			}
			compact := "compact"
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp, err := adm.CreateTopic(ctx, f.partitions, -1, map[string]*string{"cleanup.policy": &compact}, f.changelogTopic)
				if err == nil && resp.Err == nil {
					break
				}
				if time.Now().After(deadline) {
					f.t.Fatalf("recreating %s: %v %v", f.changelogTopic, err, resp.Err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}},
		{"checkpoint below log start", func(f *fixture) {
			// Kafka refuses DeleteRecords on a compact-only topic: a log
			// start offset moves on changelogs configured compact,delete.
			adm := testbroker.Admin(f.t, f.brokers)
			ctx := context.Background()
			policy := "compact,delete"
			ar, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "cleanup.policy", Value: &policy}}, f.changelogTopic)
			if err == nil {
				_, err = ar.On(f.changelogTopic, nil)
			}
			if err != nil {
				f.t.Fatalf("altering %s: %v", f.changelogTopic, err)
			}
			ends := f.changelogEnds()
			os := kadm.Offsets{}
			for p, e := range ends {
				os.Add(kadm.Offset{Topic: f.changelogTopic, Partition: p, At: e})
			}
			dr, err := adm.DeleteRecords(ctx, os)
			if err == nil {
				err = dr.Error()
			}
			if err != nil {
				f.t.Fatalf("deleting records of %s: %v", f.changelogTopic, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 2)
			f.produce(records("a", 50)...)
			topo := counterTopology(t, f.input, f.output, "")
			p, err := New(topo, f.opts()...)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.run(p, func() bool { return p.Metrics().Stages["count"].Records == 50 }, time.Minute); err != nil {
				t.Fatal(err)
			}
			tc.break_(f)
			// A recreated changelog under committed input offsets is
			// refused unless the user accepts the loss of its state.
			p2, err := New(topo, f.opts(AllowChangelogRecreate())...)
			if err != nil {
				t.Fatal(err)
			}
			f.produce("k9=x")
			if err := f.run(p2, func() bool { return p2.Metrics().Stages["count"].Records == 1 }, time.Minute); err != nil {
				t.Fatal(err)
			}
			if got := p2.Metrics().Stages["count"].Rebuilds; got == 0 {
				t.Error("no task was rebuilt")
			}
			state := f.assertStateMatchesChangelog("count", "totals")
			keys := 0
			for _, m := range state {
				keys += len(m)
			}
			if keys != 1 {
				t.Errorf("after the rebuild the store holds %d keys, want only k9's: %v", keys, state)
			}
		})
	}
}
