package sink_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/security"
	"github.com/sluicehq/sluice/sink"
)

// TestRunnerACLs is TestIntegrationSecureSinkMissingACL on a kfake cluster
// that enforces ACLs, for the kfake pass: the sink runner with exactly the
// ACLs docs/security.md lists for it stores every record once; without one
// of them, or with Describe instead of Read on its topic, Run fails
// without a rejoin, with ErrConfig naming the ACL.
func TestRunnerACLs(t *testing.T) {
	const user, password = "sink", "sink-secret"
	setup := func(t *testing.T) (brokers []string, adm *kadm.Client, app, topic string, acls []testbroker.ACL) {
		c := testbroker.NewKfake(t, kfake.EnableSASL(), kfake.EnableACLs(),
			kfake.Superuser("SCRAM-SHA-256", "admin", "admin-secret"), kfake.User("SCRAM-SHA-256", user, password))
		brokers = c.ListenAddrs()
		admin, err := security.SASL("SCRAM-SHA-256", "admin", "admin-secret")
		if err != nil {
			t.Fatal(err)
		}
		cl := testbroker.NewClient(t, brokers, kgo.SASL(admin))
		adm = kadm.NewClient(cl)
		app = testbroker.Unique(t, "sink")
		topic = "in-" + app
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, topic); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for i := range 10 {
			recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		acls = testbroker.DocACLs(t, "### Sink runners", map[string]string{"PRINCIPAL": "User:" + user, "SINK_APP": app, "SINK_INPUT": topic})
		return brokers, adm, app, topic, acls
	}
	runner := func(t *testing.T, brokers []string, app, topic string, ms *memSink) *sink.Runner {
		m, err := security.SASL("SCRAM-SHA-256", user, password)
		if err != nil {
			t.Fatal(err)
		}
		r, err := sink.New(ms, append(testOpts(brokers, app, topic), sink.SASL(m))...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("all", func(t *testing.T) {
		brokers, adm, app, topic, acls := setup(t)
		testbroker.GrantWith(t, adm, "User:"+user, acls)
		ms := newMemSink()
		errs, stop := startRunner(t, runner(t, brokers, app, topic, ms))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		end := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
		waitStored(t, ms, app+"-sink", topic, end, time.Minute, errs)
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		checkExactlyOnce(t, ms, nil, end)
	})
	probe := newACLProbe(t)
	for i := range probe {
		t.Run(fmt.Sprintf("%s-%s", probe[i].Resource, probe[i].Op), func(t *testing.T) {
			brokers, adm, app, topic, acls := setup(t)
			testbroker.GrantWith(t, adm, "User:"+user, slices.Delete(slices.Clone(acls), i, i+1))
			runRefused(t, runner(t, brokers, app, topic, newMemSink()), acls[i])
		})
	}
	t.Run("topic-Read-with-Describe", func(t *testing.T) {
		brokers, adm, app, topic, acls := setup(t)
		i := slices.IndexFunc(acls, func(a testbroker.ACL) bool { return a.Resource == "topic" })
		describe := acls[i]
		describe.Op = "Describe"
		testbroker.GrantWith(t, adm, "User:"+user, append(slices.Delete(slices.Clone(acls), i, i+1), describe))
		runRefused(t, runner(t, brokers, app, topic, newMemSink()), acls[i])
	})
}
