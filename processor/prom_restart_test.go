package processor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// gathered returns the value of the counter name of stage in reg, and
// whether there is one.
func gathered(t *testing.T, reg prometheus.Gatherer, name, stage string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return value(m, name, map[string]string{"stage": stage})
}

// TestKpromAcrossClients: a stage's clients follow each other under one
// MetricsRegisterer (a client restart after an unknown outcome makes a new
// one): each new client's franz-go metrics replace the closed one's,
// without a registration clash, and count that client's work.
func TestKpromAcrossClients(t *testing.T) {
	c := testbroker.NewKfake(t)
	brokers := c.ListenAddrs()
	topic := testbroker.Unique(t, "kprom")
	testbroker.CreateTopic(t, brokers, topic, 1, nil)
	var logs lockedBuffer
	reg := prometheus.NewPedanticRegistry()
	p, err := New(wordcount(t, "in", "out"), ApplicationID("kprom"), Brokers(brokers...), StateDir(t.TempDir()), MetricsRegisterer(reg),
		Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	st := p.stages[0]
	produce := func(n int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.WithHooks(st.kpromHooks()...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for range n {
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		// kprom counts a batch in a hook that may run just after
		// the produce returned.
		var got float64
		var ok bool
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if got, ok = gathered(t, reg, "sluice_kafka_produce_records_total", st.name); ok && got == float64(n) {
				return
			}
		}
		t.Errorf("produce_records_total of the live client = %v (present %v), want its %d records", got, ok, n)
	}
	produce(3)
	produce(5)
	if _, ok := gathered(t, reg, "sluice_kafka_produce_records_total", st.name); ok {
		t.Error("a closed client's franz-go metrics are still registered")
	}
	if strings.Contains(logs.String(), "registering a franz-go client metric failed") {
		t.Errorf("a client's metrics clashed with the one before:\n%s", logs.String())
	}
}

// TestKpromAcrossStageRestart restarts a stage's client (an EndTxn of a
// commit answered with UNKNOWN_SERVER_ERROR: the outcome is unknown, and
// the stage makes a new client with the same transactional id) under a
// MetricsRegisterer: the restarted client registers its franz-go metrics
// without a clash, and they count its work.
func TestKpromAcrossStageRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test; run without -short")
	}
	c := testbroker.NewKfake(t)
	f := newFixtureOn(t, c.ListenAddrs(), 1)
	f.produce(records("v", 200)...)
	var seen atomic.Int32
	c.ControlKey(int16(kmsg.EndTxn), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.EndTxnRequest)
		if !req.Commit || seen.Add(1) != 2 {
			c.KeepControl()
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.Version = req.Version
		resp.ErrorCode = kerr.UnknownServerError.Code
		return resp, nil, true
	})
	var logs lockedBuffer
	reg := prometheus.NewPedanticRegistry()
	p, err := New(counterTopology(t, f.input, f.output, ""), f.opts(MaxRecordsPerTransaction(20),
		MetricsRegisterer(reg), Logger(slog.New(slog.NewTextHandler(&logs, nil))))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p, func() bool {
		_, ok := gathered(t, reg, "sluice_kafka_produce_records_total", "count")
		return f.committedTotal() == 200 && p.Metrics().Stages["count"].Restarts > 0 && ok
	}, 2*time.Minute); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if strings.Contains(logs.String(), "registering a franz-go client metric failed") {
		t.Errorf("the restarted client's metrics clashed with the closed one's:\n%s", logs.String())
	}
}
