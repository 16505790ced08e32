package processor

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// replicationOf returns the number of replicas of every partition of each
// topic (failing the test when partitions disagree). A topic created a
// moment ago may be missing from the metadata of the broker that answers:
// it asks again for up to 30 s.
func replicationOf(t *testing.T, adm *kadm.Client, topics ...string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tds kadm.TopicDetails
	for {
		var err error
		tds, err = adm.ListTopics(ctx, topics...)
		missing := ""
		for _, topic := range topics {
			if td, ok := tds[topic]; err == nil && (!ok || td.Err != nil || len(td.Partitions) == 0) {
				missing = topic
			}
		}
		if err == nil && missing == "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("topic metadata after 30 s: %v (missing: %q, %v)", err, missing, tds[missing].Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := map[string]int{}
	for _, topic := range topics {
		td := tds[topic]
		n := -1
		for _, pd := range td.Partitions {
			if n >= 0 && len(pd.Replicas) != n {
				t.Fatalf("topic %s: partitions with %d and %d replicas", topic, n, len(pd.Replicas))
			}
			n = len(pd.Replicas)
		}
		out[topic] = n
	}
	return out
}

// prepare builds a word count processor on brokers with opts and runs its
// start's creation and checks of internal topics; it returns its
// repartition topic and changelog, the error, and what it logged.
func prepare(t *testing.T, brokers []string, opts ...Opt) (repartition, changelog string, err error, logged string) {
	t.Helper()
	app := testbroker.Unique(t, "rf")
	in, out := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, in, 2, nil)
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	var log syncBuffer
	all := append(testOpts(t, brokers, app), Logger(slog.New(slog.NewTextHandler(&log, nil))))
	p, err := New(wordcount(t, in, out), append(all, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	repartition, changelog = wordcountTopics(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = ensureInternal(ctx, p, testbroker.Admin(t, brokers))
	return repartition, changelog, err, log.String()
}

// ensureInternal runs the part of prepareTopics that creates and checks the
// internal topics (the rest needs the state directory open).
func ensureInternal(ctx context.Context, p *Processor, adm *kadm.Client) error {
	md, err := p.topicMetadata(ctx, adm)
	if err == nil {
		_, err = p.ensureTopics(ctx, adm, md)
	}
	return err
}

// Issue 11: on a cluster of several brokers, internal topics get the
// brokers' default replication factor (CreateTopics with -1), or the one
// of ReplicationFactor; never silently a single replica.
func TestReplicationFactorOnSeveralBrokers(t *testing.T) {
	brokers := testbroker.NewKfake(t, kfake.NumBrokers(3)).ListenAddrs()
	adm := testbroker.Admin(t, brokers)

	t.Run("default", func(t *testing.T) {
		repartition, changelog, err, logged := prepare(t, brokers)
		if err != nil {
			t.Fatal(err)
		}
		// kfake's default replication factor is min(3, brokers).
		for topic, n := range replicationOf(t, adm, repartition, changelog) {
			if n != 3 {
				t.Errorf("internal topic %s has %d replicas, want the cluster's default 3", topic, n)
			}
		}
		if strings.Contains(logged, "single replica") {
			t.Errorf("warned of a single replica:\n%s", logged)
		}
	})
	t.Run("option", func(t *testing.T) {
		repartition, changelog, err, _ := prepare(t, brokers, ReplicationFactor(2))
		if err != nil {
			t.Fatal(err)
		}
		for topic, n := range replicationOf(t, adm, repartition, changelog) {
			if n != 2 {
				t.Errorf("internal topic %s has %d replicas, want ReplicationFactor(2)", topic, n)
			}
		}
	})
	t.Run("more than brokers", func(t *testing.T) {
		_, _, err, _ := prepare(t, brokers, ReplicationFactor(4))
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("prepareTopics with ReplicationFactor(4) on 3 brokers = %v, want ErrConfig", err)
		}
		for _, want := range []string{"replication factor 4 (processor.ReplicationFactor) on a cluster of 3 brokers", "use at most 3"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q: %v", want, err)
			}
		}
	})
	t.Run("existing single replica", func(t *testing.T) {
		// A changelog made by hand (or by an older start) with one
		// replica is kept, and the start says what is wrong.
		app := testbroker.Unique(t, "rf1")
		in, out := app+"-lines", app+"-counts"
		testbroker.CreateTopic(t, brokers, in, 2, nil)
		testbroker.CreateTopic(t, brokers, out, 2, nil)
		var log syncBuffer
		p, err := New(wordcount(t, in, out), append(testOpts(t, brokers, app), Logger(slog.New(slog.NewTextHandler(&log, nil))))...)
		if err != nil {
			t.Fatal(err)
		}
		_, changelog := wordcountTopics(t, p)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := adm.CreateTopic(ctx, 2, 1, changelogConfigs(), changelog); err != nil {
			t.Fatal(err)
		}
		if err := ensureInternal(ctx, p, adm); err != nil {
			t.Fatal(err)
		}
		if got := log.String(); !strings.Contains(got, "single replica") || !strings.Contains(got, "topic="+changelog) {
			t.Errorf("no warning about the single replica of %s:\n%s", changelog, got)
		}
	})
}

func TestReplicationFactorValidation(t *testing.T) {
	for _, n := range []int{0, -2, 1 << 16} {
		_, err := New(wordcount(t, "in", "out"), append(testOpts(t, []string{"127.0.0.1:1"}, "app"), ReplicationFactor(n))...)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "processor.ReplicationFactor") {
			t.Errorf("New with ReplicationFactor(%d) = %v, want ErrConfig naming the option", n, err)
		}
	}
	for _, n := range []int{-1, 1, 3} {
		if _, err := New(wordcount(t, "in", "out"), append(testOpts(t, []string{"127.0.0.1:1"}, "app"), ReplicationFactor(n))...); err != nil {
			t.Errorf("New with ReplicationFactor(%d) = %v", n, err)
		}
	}
}

// TestIntegrationReplicationFactorDefault checks, on whatever broker the
// suite runs against (kfake, the single broker, or scripts/kafka's
// cluster, whose default is 3), that internal topics get the same
// replication factor as a topic created with the broker's default.
func TestIntegrationReplicationFactorDefault(t *testing.T) {
	brokers := testbroker.Brokers(t)
	adm := testbroker.Admin(t, brokers)
	ref := testbroker.Unique(t, "rf-ref")
	testbroker.CreateTopic(t, brokers, ref, 1, nil)
	want := replicationOf(t, adm, ref)[ref]
	repartition, changelog, err, _ := prepare(t, brokers)
	if err != nil {
		t.Fatal(err)
	}
	for topic, n := range replicationOf(t, adm, repartition, changelog) {
		if n != want {
			t.Errorf("internal topic %s has %d replicas, want the broker's default %d", topic, n, want)
		}
	}
	t.Logf("internal topics have the broker's default replication factor, %d", want)
}
