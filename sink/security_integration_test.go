package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/sink"
)

// The sink runner on the secured broker of scripts/kafka-secure (make
// test-secure), as the user "app" holding exactly the ACLs
// docs/security.md lists for a sink runner. Skipped without that broker.

// secureSink is one sink application on the secured broker: its id and its
// input topic, created and filled by the super user.
type secureSink struct {
	sb         testbroker.SecureBroker
	app, topic string
}

func newSecureSink(t *testing.T, sb testbroker.SecureBroker) secureSink {
	t.Helper()
	s := secureSink{sb: sb, app: testbroker.Unique(t, "secsink")}
	s.topic = "in-" + s.app
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := sb.Admin(t).CreateTopic(ctx, 2, -1, nil, s.topic); err != nil {
		t.Fatalf("creating %s: %v", s.topic, err)
	}
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	sb.Produce(t, s.topic, recs...)
	return s
}

// acls are the ACLs docs/security.md lists for the sink runner.
func (s secureSink) acls(t *testing.T) []testbroker.ACL {
	t.Helper()
	return testbroker.DocACLs(t, "### Sink runners", map[string]string{"PRINCIPAL": "User:app", "SINK_APP": s.app, "SINK_INPUT": s.topic})
}

// runner returns a runner of ms as the user "app", over SASL_SSL with
// SCRAM-SHA-512 and the client certificate, with opts.
func (s secureSink) runner(t *testing.T, ms *memSink, opts ...sink.Opt) *sink.Runner {
	t.Helper()
	r, err := sink.New(ms, slices.Concat(testOpts(s.sb.Brokers, s.app, s.topic),
		[]sink.Opt{sink.TLS(s.sb.TLS(t)), sink.SASL(s.sb.Mechanism(t, "SCRAM-SHA-512", "app", s.sb.AppPassword))}, opts)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestIntegrationSecureSinkMissingACL runs the sink with exactly the ACLs of
// docs/security.md (it stores every record once), then with each taken away
// in turn, and checks that Run then fails without a rejoin, with ErrConfig
// naming the ACL to grant. One more case keeps Describe on the input topic
// without Read (as a principal that writes the topic has it): the runner
// gets past its start and must fail at the fetch.
func TestIntegrationSecureSinkMissingACL(t *testing.T) {
	sb := testbroker.Secure(t)
	t.Run("all", func(t *testing.T) {
		s := newSecureSink(t, sb)
		sb.Grant(t, "User:app", s.acls(t))
		ms := newMemSink()
		// With CommitToKafka, whose commits the same ACLs must allow.
		errs, stop := startRunner(t, s.runner(t, ms, sink.CommitToKafka()))
		end := endOffsetsAs(t, sb, s.topic)
		waitStored(t, ms, s.app+"-sink", s.topic, end, time.Minute, errs)
		// The commits for monitoring are asynchronous: wait for them.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			committed, err := sb.Admin(t).FetchOffsets(ctx, s.app+"-sink")
			cancel()
			all := err == nil
			for p, e := range end {
				o, ok := committed.Lookup(s.topic, p)
				all = all && ok && o.At == e
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the group's committed offsets are %v (err %v) after 30s, want %v", committed, err, end)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := stop(); err != nil {
			t.Fatalf("Run: %v", err)
		}
		checkExactlyOnce(t, ms, nil, end)
	})

	probe := newACLProbe(t)
	for i := range probe {
		t.Run(fmt.Sprintf("%s-%s", probe[i].Resource, probe[i].Op), func(t *testing.T) {
			s := newSecureSink(t, sb)
			all := s.acls(t)
			sb.Grant(t, "User:app", slices.Delete(slices.Clone(all), i, i+1))
			runRefused(t, s.runner(t, newMemSink()), all[i])
		})
	}

	t.Run("topic-Read-with-Describe", func(t *testing.T) {
		s := newSecureSink(t, sb)
		all := s.acls(t)
		i := slices.IndexFunc(all, func(a testbroker.ACL) bool { return a.Resource == "topic" })
		describe := all[i]
		describe.Op = "Describe"
		sb.Grant(t, "User:app", append(slices.Delete(slices.Clone(all), i, i+1), describe))
		runRefused(t, s.runner(t, newMemSink()), all[i])
	})
}

// newACLProbe returns the sink's ACLs for placeholder names, to name the
// subtests.
func newACLProbe(t *testing.T) []testbroker.ACL {
	return testbroker.DocACLs(t, "### Sink runners", map[string]string{"PRINCIPAL": "User:app", "SINK_APP": "app", "SINK_INPUT": "in"})
}

// runRefused runs r, which lacks the ACL missing, and checks that Run fails
// within 2 minutes without a rejoin, with ErrConfig naming the operation,
// the resource kind and its name (or prefix).
func runRefused(t *testing.T, r *sink.Runner, missing testbroker.ACL) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	err := r.Run(ctx)
	t.Logf("without %v: Run returned after %v: %v", missing, time.Since(start).Round(time.Millisecond), err)
	if ctx.Err() != nil || err == nil {
		t.Fatalf("without %v: Run did not fail within 2 minutes (err %v)", missing, err)
	}
	if m := r.Metrics(); m.Restarts != 0 || m.Batches != 0 {
		t.Errorf("metrics %+v: want no rejoin and no batch before failing", m)
	}
	if !errors.Is(err, sink.ErrConfig) {
		t.Errorf("want ErrConfig, got %v", err)
	}
	msg := strings.ToLower(strings.ReplaceAll(err.Error(), " ", ""))
	for _, want := range []string{missing.Op, missing.Resource, missing.Name} {
		if !strings.Contains(msg, strings.ToLower(want)) {
			t.Errorf("the error does not name %q: %v", want, err)
		}
	}
}

// endOffsetsAs lists the high watermarks of topic as the super user.
func endOffsetsAs(t *testing.T, sb testbroker.SecureBroker, topic string) map[int32]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := sb.Admin(t).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		t.Fatalf("listing end offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for p, e := range ends[topic] {
		out[p] = e.Offset
	}
	return out
}
