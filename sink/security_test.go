package sink_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/security"
	"github.com/sluicehq/sluice/sink"
)

// TestSecureRunner runs a sink on a kfake cluster that speaks only TLS and
// SCRAM-SHA-256: every client of the runner (topic check, group, admin,
// leave) must carry both. A broker certificate from an unknown CA fails Run
// at start with ErrConfig.
func TestSecureRunner(t *testing.T) {
	c, ca := testbroker.NewSecureKfake(t)
	brokers := c.ListenAddrs()
	tc, err := security.TLSFiles{CA: ca}.Config()
	if err != nil {
		t.Fatal(err)
	}
	m, err := security.SASL("SCRAM-SHA-256", testbroker.KfakeUser, testbroker.KfakePassword)
	if err != nil {
		t.Fatal(err)
	}
	app := testbroker.Unique(t, "sink")
	topic := app + "-in"
	cl := testbroker.NewClient(t, brokers, kgo.DialTLSConfig(tc), kgo.SASL(m), kgo.DefaultProduceTopic(topic))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, k := range []string{"a", "b", "c", "d"} {
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte(k)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })

	ms := newMemSink()
	r, err := sink.New(ms, append(testOpts(brokers, app, topic), sink.TLS(tc), sink.SASL(m), sink.InstanceID("i1"))...)
	if err != nil {
		t.Fatal(err)
	}
	errs, stop := startRunner(t, r)
	waitStored(t, ms, app+"-sink", topic, end, time.Minute, errs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, ms, nil, end)

	systemRoots, err := security.TLSFiles{}.Config()
	if err != nil {
		t.Fatal(err)
	}
	r, err = sink.New(newMemSink(), append(testOpts(brokers, app, topic), sink.TLS(systemRoots), sink.SASL(m))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background()); !errors.Is(err, sink.ErrConfig) || !strings.Contains(err.Error(), "sink.TLS") {
		t.Fatalf("unknown CA: want ErrConfig naming sink.TLS, got %v", err)
	}
}
