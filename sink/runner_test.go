package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
)

// checkExactlyOnce fails unless every offset of every partition from start
// (0 if absent) below end was written exactly once, and none below start
// (the input was produced without transactions, so its offsets are dense).
func checkExactlyOnce(t *testing.T, m *memSink, start, end map[int32]int64) {
	t.Helper()
	w := m.written()
	for p, e := range end {
		for o := range w[p] {
			if o < start[p] {
				t.Errorf("partition %d: offset %d written, below the start %d", p, o, start[p])
			}
		}
		missing, dups := 0, 0
		for o := start[p]; o < e; o++ {
			switch n := w[p][o]; {
			case n == 0:
				missing++
			case n > 1:
				dups++
			}
		}
		if missing+dups > 0 {
			t.Errorf("partition %d: %d offsets missing, %d written more than once (of %d)", p, missing, dups, e)
		}
	}
}

func TestIntegrationRunnerWritesEachRecordOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a broker")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 3, nil)
	produceN(t, brokers, topic, 0, 500)

	m := newMemSink()
	r, err := sink.New(m, append(testOpts(brokers, app, topic), sink.MaxRecordsPerBatch(64))...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	end := endOffsets(t, brokers, topic)
	waitStored(t, m, r.Group(), topic, end, time.Minute, errs)
	// More input while it runs.
	produceN(t, brokers, topic, 500, 200)
	end = endOffsets(t, brokers, topic)
	waitStored(t, m, r.Group(), topic, end, time.Minute, errs)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkExactlyOnce(t, m, nil, end)
	m.checkBatches(t, nil)
	met := r.Metrics()
	if met.Records != 700 || met.Fenced != 0 || met.Stale != 0 {
		t.Errorf("metrics %+v: want 700 records, no fenced or stale", met)
	}
	for _, b := range m.batches {
		if len(b.Records) > 64 {
			t.Errorf("a batch holds %d records, above MaxRecordsPerBatch(64)", len(b.Records))
		}
		if b.Group != app+"-sink" {
			t.Errorf("batch group %q, want %q", b.Group, app+"-sink")
		}
	}
}

// The sink's offsets decide where a partition starts, not the group's
// committed offsets; a partition the sink does not know starts at
// StartOffset.
func TestResumesFromSinkOffsetsNotGroupOffsets(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 2, nil)
	produceN(t, brokers, topic, 0, 100)
	end := endOffsets(t, brokers, topic)
	if end[0] < 10 || end[1] < 10 {
		t.Fatalf("uneven test input: %v", end)
	}

	group := app + "-sink"
	// The group has committed offsets that disagree with the sink.
	adm := testbroker.Admin(t, brokers)
	var os kadm.Offsets
	os.AddOffset(topic, 0, 8, -1)
	os.AddOffset(topic, 1, 3, -1)
	if _, err := adm.CommitOffsets(context.Background(), group, os); err != nil {
		t.Fatal(err)
	}
	m := newMemSink()
	m.set(group, topic, 0, 5)

	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	waitStored(t, m, group, topic, end, time.Minute, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m.checkBatches(t, map[int32]int64{0: 5})
	// Partition 0 from the sink's 5 (not the group's 8), partition 1 from
	// the start (not the group's 3).
	checkExactlyOnce(t, m, map[int32]int64{0: 5}, end)
}

// A write whose offsets moved under it (another writer) is fenced: the
// runner drops the batch, rejoins, and goes on from the sink's offsets.
func TestFencedWriteDropsTheBatchAndRejoins(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 50)
	group := app + "-sink"

	m := newMemSink()
	// Before the first write, "another writer" stores offsets 0..19 of
	// partition 0 itself, so the runner's batch (From = none) is fenced.
	var once sync.Once
	var other *sink.Batch
	m.beforeWrite = func(_ context.Context, b *sink.Batch) error {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			other = &sink.Batch{Group: group, Ranges: []sink.Range{{Topic: topic, Partition: 0, From: sink.NoOffset, To: 20}}}
			for o := range int64(20) {
				other.Records = append(other.Records, sink.Record{Topic: topic, Partition: 0, Offset: o})
			}
			m.offsets[okey(group, topic, 0)] = sink.Position{Offset: 20, TopicID: b.Ranges[0].TopicID}
			m.batches = append(m.batches, other)
		})
		return nil
	}
	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	end := endOffsets(t, brokers, topic)
	waitStored(t, m, group, topic, end, time.Minute, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, m, nil, end)
	m.checkBatches(t, nil)
	met := r.Metrics()
	if met.Fenced != 1 || met.Restarts != 1 {
		t.Errorf("metrics %+v: want 1 fenced write and 1 restart", met)
	}
	if m.fenced != 1 {
		t.Errorf("the sink fenced %d writes, want 1", m.fenced)
	}
}

// A rebalance waits for the batch being written: a revoked partition's
// batch is never written after its new owner read the partition's offsets.
// Checked directly (a write of a partition must come from the member that
// read its offsets last) and by the absence of fenced writes, over three
// rounds of a second member joining and leaving while writes are slow.
func TestIntegrationRebalanceWaitsForTheWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a broker")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 4, nil)
	group := app + "-sink"

	m := newMemSink()
	var (
		mu         sync.Mutex
		lastReader = map[int32]string{}
		violations []string
	)
	member := func(id string) sink.Sink {
		return &funcSink{
			offsets: func(ctx context.Context, g, tp string, ps []int32) (map[int32]sink.Position, error) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range ps {
					lastReader[p] = id
				}
				return m.Offsets(ctx, g, tp, ps)
			},
			write: func(ctx context.Context, b *sink.Batch) error {
				time.Sleep(300 * time.Millisecond) // a slow database
				mu.Lock()
				defer mu.Unlock()
				err := m.Write(ctx, b)
				if err == nil {
					for _, rg := range b.Ranges {
						if r := lastReader[rg.Partition]; r != id {
							violations = append(violations, fmt.Sprintf("%s wrote partition %d after %s read its offsets", id, rg.Partition, r))
						}
					}
				}
				return err
			},
		}
	}
	newRunner := func(id string) *sink.Runner {
		r, err := sink.New(member(id), append(testOpts(brokers, app, topic), sink.InstanceID(id), sink.MaxRecordsPerBatch(200))...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	stopInput := make(chan struct{})
	inputDone := make(chan struct{})
	go func() {
		defer close(inputDone)
		for i := 0; ; i += 20 {
			select {
			case <-stopInput:
				return
			case <-time.After(50 * time.Millisecond):
			}
			produceN(t, brokers, topic, i, 20)
		}
	}()
	a := newRunner("a")
	errsA, stopA := startRunner(t, a)
	var fenced, fromB int64
	for range 3 {
		time.Sleep(time.Second)
		b := newRunner("b")
		_, stopB := startRunner(t, b)
		time.Sleep(1500 * time.Millisecond)
		if err := stopB(); err != nil { // leaves: the partitions move back
			t.Fatal(err)
		}
		fenced += b.Metrics().Fenced
		fromB += b.Metrics().Records
	}
	close(stopInput)
	<-inputDone
	end := endOffsets(t, brokers, topic)
	waitStored(t, m, group, topic, end, time.Minute, errsA)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, m, nil, end)
	m.checkBatches(t, nil)
	fenced += a.Metrics().Fenced
	t.Logf("a: %+v; b wrote %d records", a.Metrics(), fromB)
	for _, v := range violations {
		t.Error(v)
	}
	if fenced != 0 {
		t.Errorf("%d writes fenced: a revoked partition's batch was written after its new owner read the offsets", fenced)
	}
	if fromB == 0 {
		t.Errorf("the second member wrote nothing: no rebalance happened")
	}
}

// funcSink is a Sink made of two functions.
type funcSink struct {
	offsets func(ctx context.Context, group, topic string, partitions []int32) (map[int32]sink.Position, error)
	write   func(ctx context.Context, b *sink.Batch) error
}

func (f *funcSink) Offsets(ctx context.Context, group, topic string, partitions []int32) (map[int32]sink.Position, error) {
	return f.offsets(ctx, group, topic, partitions)
}

func (f *funcSink) Write(ctx context.Context, b *sink.Batch) error { return f.write(ctx, b) }

// A member whose write hangs past the rebalance timeout is removed from the
// group; its partitions move on; when the write finally goes through it is
// fenced by the compare-and-set, and the member rejoins. This is the zombie
// case, in one process.
func TestIntegrationZombieWriteIsFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a broker")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 2, nil)
	group := app + "-sink"
	produceN(t, brokers, topic, 0, 100)

	m := newMemSink()
	release := make(chan struct{})
	var hung atomic.Bool
	var zombie atomic.Pointer[sink.Batch]
	hang := func(_ context.Context, b *sink.Batch) error {
		if hung.CompareAndSwap(false, true) {
			zombie.Store(b)
			<-release // ignores ctx, like a process that is paused
		}
		return nil
	}
	opts := func(id string) []sink.Opt {
		return append(testOpts(brokers, app, topic), sink.InstanceID(id),
			sink.SessionTimeout(3*time.Second), sink.RebalanceTimeout(3*time.Second),
			sink.WriteTimeout(time.Second), sink.WriteAttempts(2))
	}
	ms := &hangingSink{memSink: m, hang: hang}
	a, err := sink.New(ms, opts("a")...)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sink.New(m, opts("b")...)
	if err != nil {
		t.Fatal(err)
	}
	errsA, stopA := startRunner(t, a)
	for zombie.Load() == nil {
		select {
		case err := <-errsA:
			t.Fatalf("a stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// a hangs in its first write. b joins; the rebalance waits for a up to
	// the rebalance timeout, then goes on without it.
	errsB, stopB := startRunner(t, b)
	end := endOffsets(t, brokers, topic)
	waitStored(t, m, group, topic, end, time.Minute, errsB)
	close(release)
	// a's write is fenced; a rejoins.
	deadline := time.Now().Add(30 * time.Second)
	for a.Metrics().Restarts == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	produceN(t, brokers, topic, 100, 100)
	end = endOffsets(t, brokers, topic)
	waitStored(t, m, group, topic, end, time.Minute, errsB)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, m, nil, end)
	m.checkBatches(t, nil)
	if ma := a.Metrics(); ma.Fenced != 1 || ma.Restarts != 1 {
		t.Errorf("zombie a: %+v, want 1 fenced write and 1 restart", ma)
	}
	if mb := b.Metrics(); mb.Fenced != 0 {
		t.Errorf("b: %+v, want no fenced write", mb)
	}
}

// hangingSink runs hang before delegating Write.
type hangingSink struct {
	*memSink
	hang func(context.Context, *sink.Batch) error
}

func (h *hangingSink) Write(ctx context.Context, b *sink.Batch) error {
	if err := h.hang(ctx, b); err != nil {
		return err
	}
	return h.memSink.Write(ctx, b)
}

// Errors other than ErrFenced are retried with the same batch; after
// WriteAttempts failures Run returns the error and nothing is stored.
func TestWriteErrors(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 10)
	group := app + "-sink"
	boom := errors.New("database is down")

	t.Run("retried", func(t *testing.T) {
		m := newMemSink()
		var fails atomic.Int32
		m.beforeWrite = func(context.Context, *sink.Batch) error {
			if fails.Add(1) <= 2 {
				return boom
			}
			return nil
		}
		r, err := sink.New(m, append(testOpts(brokers, app+"-a", topic), sink.WriteAttempts(3))...)
		if err != nil {
			t.Fatal(err)
		}
		errs, stop := startRunner(t, r)
		waitStored(t, m, app+"-a-sink", topic, endOffsets(t, brokers, topic), time.Minute, errs)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if met := r.Metrics(); met.Retries != 2 || met.Records != 10 {
			t.Errorf("metrics %+v: want 2 retries, 10 records", met)
		}
	})
	t.Run("gives up", func(t *testing.T) {
		m := newMemSink()
		m.beforeWrite = func(context.Context, *sink.Batch) error { return boom }
		r, err := sink.New(m, append(testOpts(brokers, app, topic), sink.WriteAttempts(2))...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = r.Run(ctx)
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the write error", err)
		}
		if _, ok := m.offset(group, topic, 0); ok || len(m.batches) != 0 {
			t.Errorf("something was stored after failed writes")
		}
		if met := r.Metrics(); met.Retries != 1 {
			t.Errorf("metrics %+v: want 1 retry", met)
		}
	})
}

// A failing Offsets fails the assignment; the group retries it, and nothing
// is consumed from a guessed offset meanwhile.
func TestOffsetsErrorRetriesTheAssignment(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	produceN(t, brokers, topic, 0, 10)
	group := app + "-sink"

	m := newMemSink()
	m.set(group, topic, 0, 4)
	var calls atomic.Int32
	m.offsetsErr = func() error {
		if calls.Add(1) <= 2 {
			return errors.New("database is starting")
		}
		return nil
	}
	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	waitStored(t, m, group, topic, endOffsets(t, brokers, topic), time.Minute, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m.checkBatches(t, map[int32]int64{0: 4})
	if met := r.Metrics(); met.Records != 6 {
		t.Errorf("metrics %+v: want 6 records (offsets 4..9)", met)
	}
}

func TestCommitToKafka(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 2, nil)
	produceN(t, brokers, topic, 0, 40)
	group := app + "-sink"

	m := newMemSink()
	r, err := sink.New(m, append(testOpts(brokers, app, topic), sink.CommitToKafka())...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	end := endOffsets(t, brokers, topic)
	waitStored(t, m, group, topic, end, time.Minute, errs)
	adm := testbroker.Admin(t, brokers)
	deadline := time.Now().Add(30 * time.Second)
	for {
		os, err := adm.FetchOffsets(context.Background(), group)
		ok := err == nil
		for p, e := range end {
			o, found := os.Lookup(topic, p)
			ok = ok && found && o.At == e
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group offsets %v (err %v), want %v", os, err, end)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestMissingTopicFailsFast(t *testing.T) {
	brokers := testbroker.Brokers(t)
	r, err := sink.New(newMemSink(), sink.Brokers(brokers...), sink.ApplicationID("x"), sink.Topics(testbroker.Unique(t, "nope")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Run(ctx); !errors.Is(err, sink.ErrConfig) {
		t.Fatalf("Run = %v, want ErrConfig", err)
	}
}

// Records from a read_committed fetch only: an aborted transaction's
// records never reach the sink, and the offsets still move past them.
func TestIntegrationReadCommittedOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a broker")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	group := app + "-sink"

	txn := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(app+"-txn"))
	ctx := context.Background()
	for i, commit := range []bool{true, false, true} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		v := []byte{'a' + byte(i)}
		if err := txn.ProduceSync(ctx, &kgo.Record{Value: v}, &kgo.Record{Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	m := newMemSink()
	r, err := sink.New(m, testOpts(brokers, app, topic)...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	// The last record is at end-2 (end-1 is the commit marker).
	end := endOffsets(t, brokers, topic)
	waitStored(t, m, group, topic, map[int32]int64{0: end[0] - 1}, time.Minute, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range m.batches {
		for _, r := range b.Records {
			got = append(got, string(r.Value))
		}
	}
	if len(got) != 4 || got[0] != "a" || got[1] != "a" || got[2] != "c" || got[3] != "c" {
		t.Errorf("the sink got %q, want the committed transactions' a a c c", got)
	}
	m.checkBatches(t, nil)
}
