package testbroker

import (
	"context"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests run on kfake by default and on the real broker when
// KAFKA_BROKERS is set (the Makefile runs TestIntegration* both ways).

func TestUnique(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9-]+$`)
	for _, name := range []string{"plain", "with space/and sub.test", "__weird__", strings.Repeat("x", 300)} {
		t.Run(name, func(t *testing.T) {
			a, b := Unique(t, "topic"), Unique(t, "topic")
			if a == b {
				t.Fatalf("Unique returned %q twice", a)
			}
			for _, s := range []string{a, b} {
				if !valid.MatchString(s) || len(s) > 249 {
					t.Fatalf("Unique = %q: not a valid, collision-free Kafka name", s)
				}
				if !strings.HasPrefix(s, "topic-TestUnique-") {
					t.Fatalf("Unique = %q: want prefix and test name first", s)
				}
			}
		})
	}
	if got := Unique(t, ""); !strings.HasPrefix(got, "TestUnique-") {
		t.Fatalf("Unique with empty prefix = %q", got)
	}
}

func TestEnvBrokers(t *testing.T) {
	t.Setenv(EnvBrokers, " 127.0.0.1:1 , ,h:2,")
	if got := strings.Join(envBrokers(), "|"); got != "127.0.0.1:1|h:2" {
		t.Fatalf("envBrokers = %q", got)
	}
	if !Real() {
		t.Fatal("Real() = false with KAFKA_BROKERS set")
	}
	t.Setenv(EnvBrokers, " ")
	if Real() {
		t.Fatal("Real() = true with a blank KAFKA_BROKERS")
	}
}

// TestIntegrationTransactionalReadCommitted is the end-to-end check of the
// helpers: a committed transaction, an aborted one and plain records, read
// back with read_committed.
func TestIntegrationTransactionalReadCommitted(t *testing.T) {
	brokers := Brokers(t)
	topic := Unique(t, "t")
	CreateTopic(t, brokers, topic, 3, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	txn := NewClient(t, brokers,
		kgo.TransactionalID(Unique(t, "txn")),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	produceTxn := func(commit kgo.TransactionEndTry, tag string) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for p := int32(0); p < 3; p++ {
			r := &kgo.Record{Partition: p, Key: []byte(fmt.Sprint(p)), Value: []byte(tag)}
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatalf("produce %s: %v", tag, err)
			}
		}
		if err := txn.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end %s: %v", tag, err)
		}
	}
	produceTxn(kgo.TryCommit, "committed-1")
	produceTxn(kgo.TryAbort, "aborted")
	produceTxn(kgo.TryCommit, "committed-2")

	plain := NewClient(t, brokers, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := plain.ProduceSync(ctx, &kgo.Record{Partition: 1, Value: []byte("plain")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	recs := ReadCommitted(t, brokers, topic)
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%d:%s", r.Partition, r.Value))
	}
	want := "0:committed-1 0:committed-2 1:committed-1 1:committed-2 1:plain 2:committed-1 2:committed-2"
	if strings.Join(got, " ") != want {
		t.Fatalf("ReadCommitted:\n got %s\nwant %s", strings.Join(got, " "), want)
	}

	// Records produced after the call are not waited for, and the ends are
	// re-listed on each call.
	if err := plain.ProduceSync(ctx, &kgo.Record{Partition: 0, Value: []byte("later")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if n := len(ReadCommitted(t, brokers, topic)); n != len(recs)+1 {
		t.Fatalf("second ReadCommitted: %d records, want %d", n, len(recs)+1)
	}
}

// TestIntegrationReadCommittedOpenTransaction: an open transaction below the
// end makes ReadCommitted wait, and fail clearly when it times out.
func TestIntegrationReadCommittedOpenTransaction(t *testing.T) {
	brokers := Brokers(t)
	topic := Unique(t, "t")
	CreateTopic(t, brokers, topic, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	txn := NewClient(t, brokers, kgo.TransactionalID(Unique(t, "txn")), kgo.DefaultProduceTopic(topic))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, kgo.StringRecord("open")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	msg := fatalMessage(t, func(tb testing.TB) { ReadCommittedWithin(tb, 2*time.Second, brokers, topic) })
	if !strings.Contains(msg, "did not reach the end") || !strings.Contains(msg, "transaction is still open") {
		t.Fatalf("ReadCommitted on an open transaction: want a clear failure, got %q", msg)
	}

	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if recs := ReadCommitted(t, brokers, topic); len(recs) != 1 || string(recs[0].Value) != "open" {
		t.Fatalf("after commit: %d records", len(recs))
	}
}

func TestIntegrationReadCommittedEmptyAndMissing(t *testing.T) {
	brokers := Brokers(t)
	topic := Unique(t, "t")
	CreateTopic(t, brokers, topic, 2, nil)
	start := time.Now()
	if recs := ReadCommitted(t, brokers, topic); len(recs) != 0 {
		t.Fatalf("empty topic: %d records", len(recs))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("empty topic took %v", d)
	}
	msg := fatalMessage(t, func(tb testing.TB) { ReadCommittedWithin(tb, 5*time.Second, brokers, Unique(t, "missing")) })
	if !strings.Contains(msg, "listing start offsets") {
		t.Fatalf("missing topic: want a listing failure, got %q", msg)
	}
}

func TestIntegrationCreateTopic(t *testing.T) {
	brokers := Brokers(t)
	topic := Unique(t, "changelog")
	compact := "compact"
	CreateTopic(t, brokers, topic, 4, map[string]*string{"cleanup.policy": &compact})

	adm := Admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tds[topic].Partitions); n != 4 {
		t.Fatalf("%d partitions, want 4", n)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			found = c.MaybeValue() == "compact"
		}
	}
	if !found {
		t.Fatalf("cleanup.policy=compact not set on %s: %+v", topic, rc.Configs)
	}

	msg := fatalMessage(t, func(tb testing.TB) { CreateTopic(tb, brokers, topic, 1, nil) })
	if !strings.Contains(msg, "creating topic") {
		t.Fatalf("creating an existing topic: want a failure, got %q", msg)
	}

	// -1 partitions: the broker default, 1 on both brokers.
	dflt := Unique(t, "default")
	CreateTopic(t, brokers, dflt, -1, nil)
	tds, err = adm.ListTopics(ctx, dflt)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tds[dflt].Partitions); n != 1 {
		t.Fatalf("default partitions: %d, want 1", n)
	}
}

// TestNewKfakeControlKey shows the fault-injection hook: NewKfake's cluster
// can intercept one request kind.
func TestNewKfakeControlKey(t *testing.T) {
	c := NewKfake(t)
	brokers := c.ListenAddrs()
	if len(brokers) != 1 {
		t.Fatalf("NewKfake: %d brokers, want 1", len(brokers))
	}
	c.ControlKey(int16(kmsg.CreateTopics), func(req kmsg.Request) (kmsg.Response, error, bool) {
		creq := req.(*kmsg.CreateTopicsRequest)
		resp := creq.ResponseKind().(*kmsg.CreateTopicsResponse)
		for _, rt := range creq.Topics {
			st := kmsg.NewCreateTopicsResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = 44 // POLICY_VIOLATION
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := kadm.NewClient(NewClient(t, brokers)).CreateTopic(ctx, 1, -1, nil, Unique(t, "t"))
	if err == nil || !strings.Contains(err.Error(), "POLICY_VIOLATION") {
		t.Fatalf("intercepted CreateTopics: err = %v, want POLICY_VIOLATION", err)
	}
	// The interceptor ran once (no KeepControl): the next create succeeds.
	CreateTopic(t, brokers, Unique(t, "t"), 1, nil)
}

// fatalTB captures the first Fatal/Fatalf and ends the goroutine, so tests
// can check the helpers' failure messages.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fatalTB) FailNow()          { f.Fatalf("FailNow") }

// fatalMessage runs fn with a TB that records a fatal failure instead of
// failing t, and returns the failure message ("" if fn did not fail).
func fatalMessage(t *testing.T, fn func(testing.TB)) string {
	t.Helper()
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}
