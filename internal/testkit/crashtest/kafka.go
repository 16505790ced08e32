package crashtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// OpenTransaction reports whether the broker describes a transaction of
// instance name as open (Ongoing, PrepareCommit or PrepareAbort): one of the
// transactional ids <App>-<stage>-<name>. A failed DescribeTransactions
// that returned nothing is logged and counts as no open transaction.
func (h *Harness) OpenTransaction(name string) bool {
	adm := testbroker.Admin(h.T, h.Brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	txns, err := adm.DescribeTransactions(ctx)
	if err != nil && len(txns) == 0 {
		h.T.Logf("describing transactions: %v", err)
		return false
	}
	return txnOpen(txns, h.App, name)
}

// txnOpen reports whether txns holds an open transaction of instance name
// of application app.
func txnOpen(txns kadm.DescribedTransactions, app, name string) bool {
	for id, d := range txns {
		if strings.HasPrefix(id, app+"-") && strings.HasSuffix(id, "-"+name) {
			switch d.State {
			case "Ongoing", "PrepareCommit", "PrepareAbort":
				return true
			}
		}
	}
	return false
}

// WaitCount consumes topic with read_committed from its start until it has
// seen n records, timeout passed or every started instance has exited, and
// returns how many records it saw (the caller judges a shortfall).
func (h *Harness) WaitCount(topic string, n int, timeout time.Duration) int {
	return WaitCountWhile(h.T, h.Brokers, topic, n, timeout, h.alive)
}

// WaitCountWhile consumes topic with read_committed from its start until it
// has seen n records, timeout passed or alive returns false (checked before
// every poll of at most a second), and returns how many records it saw.
func WaitCountWhile(t testing.TB, brokers []string, topic string, n int, timeout time.Duration, alive func() bool) int {
	cl := testbroker.NewClient(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	seen := 0
	for seen < n && ctx.Err() == nil && alive() {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		seen += cl.PollFetches(pctx).NumRecords()
		pcancel()
	}
	return seen
}

// Produce writes recs to topic (records without a topic) and waits for
// them to be acknowledged, within a minute. A failure is reported with
// t.Errorf, so that Produce may run on another goroutine (see SteadyInput).
func Produce(t testing.TB, brokers []string, topic string, recs []*kgo.Record) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Errorf("producing to %s: %v", topic, err)
	}
}

// SteadyInput calls produce every interval, on a goroutine of its own,
// until the returned function is called; that function returns once
// produce has returned for the last time, and may be called more than once.
func SteadyInput(interval time.Duration, produce func()) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(interval):
			}
			produce()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}
