package processor

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// Adversarial review (2) of the pace, cycleEOS split, changelog replay and
// client-options refactors (98289e7..ed44e0d). The replay, cycleEOS and the
// sink's cycle were compared with their previous versions line by line and
// found equivalent; these tests pin what the options refactor must keep:
// whatever the user passes in KafkaOptions, every consumer of the runtime
// reads only committed records.

// abortedThenCommitted writes n records of key k to topic in a transaction
// that it aborts, then m records of k without a transaction.
func abortedThenCommitted(t *testing.T, brokers []string, topic, k string, n, m int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txn := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic),
		kgo.TransactionalID(testbroker.Unique(t, "aborted")), kgo.TransactionTimeout(10*time.Second))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte("aborted" + strconv.Itoa(i))})
	}
	if err := txn.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	plain := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
	recs = recs[:0]
	for i := range m {
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte("v" + strconv.Itoa(i))})
	}
	if err := plain.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestReview2UserIsolationLevelCannotUncommitStage: KafkaOptions are
// appended to the stage's client after sluice's options, and franz-go's
// last option of a kind wins. The stage client put
// FetchIsolationLevel(ReadCommitted) (and its offset reset) BEFORE the
// user's options, so KafkaOptions(kgo.FetchIsolationLevel(
// kgo.ReadUncommitted())) (a setting copied from another consumer, say)
// made an exactly-once stage read and process an aborted transaction's
// input: its effects (state, outputs) committed although the input never
// did. Sequence: an upstream producer writes 10 records of key k in a
// transaction and aborts it; 5 records of k are written after; the counting
// stage runs with the user's read_uncommitted option. The restore's and
// global tables' consumers (replay.go) put their isolation level after the
// user's options; the stage client must too.
func TestReview2UserIsolationLevelCannotUncommitStage(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	abortedThenCommitted(t, f.brokers, f.input, "k", 10, 5)
	adm := testbroker.Admin(t, f.brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	ends, err := adm.ListEndOffsets(ctx, f.input)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(f.input, 0)
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(
		KafkaOptions(kgo.FetchIsolationLevel(kgo.ReadUncommitted())))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p, func() bool { return f.committedTotal() >= end.Offset }, time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	out := testbroker.ReadCommitted(t, f.brokers, f.output)
	last := ""
	for _, r := range out {
		last = string(r.Value)
	}
	if len(out) != 5 || last != "5" {
		t.Fatalf("the stage emitted %d counts ending at %q for 5 committed input records (and 10 aborted): it processed aborted input", len(out), last)
	}
}

// TestReview2RestoreReadsCommittedWhateverTheUserOptions: the replay's
// consumer (cfg.newClient with enforced options) keeps read_committed, the
// control records and no offset reset although the user's KafkaOptions ask
// for read_uncommitted and a reset to the start: an aborted transaction in
// the changelog is not applied, and the restore ends.
func TestReview2RestoreReadsCommittedWhateverTheUserOptions(t *testing.T) {
	kf := testbroker.NewKfake(t)
	r := newRestoreRig(t, kf, nil, KafkaOptions(
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	))
	r.commitTxn("k1=a", "k2=b")
	r.openTxn("k1=aborted", "k3=aborted")(false)
	r.commitTxn("k2=c")
	r.mustRestore("k1=a", "k2=c")
}
