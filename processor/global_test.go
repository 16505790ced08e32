package processor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/codec"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// globalOrders enriches orders (order id -> user) with the users' countries
// from a global table of users (user -> country).
func globalOrders(t testing.TB, orders, users, out string) *stream.Topology {
	t.Helper()
	b := stream.NewBuilder()
	o := stream.Source(b, orders, codec.String{}, codec.String{}, stream.Named("orders"))
	u := stream.SourceGlobalTable(b, users, codec.String{}, codec.String{}, stream.Named("users"))
	j := stream.GlobalLeftJoin(o, u, func(_, user string) string { return user }, func(_, user, country string, ok bool) string {
		if !ok {
			country = "?"
		}
		return user + "@" + country
	}, stream.Named("with-country"))
	stream.To(j, out, codec.String{}, codec.String{}, stream.Named("write"))
	topo, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

// produceGlobal produces key=value records to topic; a value "<nil>" is a
// tombstone.
func produceGlobal(t testing.TB, brokers []string, topic string, kvs ...string) {
	t.Helper()
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		r := &kgo.Record{Key: []byte(k)}
		if v != "<nil>" {
			r.Value = []byte(v)
		}
		recs = append(recs, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("producing to %s: %v", topic, err)
	}
}

// running is a Processor running in the background.
type running struct {
	*Processor
	cancel context.CancelFunc
	done   chan error
}

func startProcessor(t testing.TB, topo *stream.Topology, opts ...Opt) *running {
	t.Helper()
	p, err := New(topo, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Processor: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop stops the processor and returns Run's error (nil when already
// stopped).
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readOut returns the read_committed records of topic as key=value, and the
// partitions they are in.
func readOut(t testing.TB, brokers []string, topic string) (map[string]string, map[int32]bool) {
	t.Helper()
	kv, parts := map[string]string{}, map[int32]bool{}
	for _, r := range testbroker.ReadCommitted(t, brokers, topic) {
		kv[string(r.Key)] = string(r.Value)
		parts[r.Partition] = true
	}
	return kv, parts
}

// The stream has 3 partitions and the global table's topic 1: every task
// looks its keys up in the whole table. Then a restart with the same state
// directory resumes the table's copy from its checkpoint: it replays only
// what the topic received while the processor was down.
func TestIntegrationGlobalTable(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "global")
	orders, users, out := app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 3, nil)
	testbroker.CreateTopic(t, brokers, users, 1, map[string]*string{"cleanup.policy": ptr("compact")})
	testbroker.CreateTopic(t, brokers, out, 3, nil)
	topo := globalOrders(t, orders, users, out)
	if s := topology.Of(topo).Stages; len(s) != 1 || len(s[0].Inputs) != 1 {
		t.Fatalf("want one stage reading only %s:\n%v", orders, topo)
	}
	produceGlobal(t, brokers, users, "ann=de", "bob=fr", "cid=de", "cid=<nil>")

	opts := append(testOpts(t, brokers, app), StateDir(t.TempDir()))
	p := startProcessor(t, topo, opts...)
	var kvs []string
	want := map[string]string{}
	for i := range 12 {
		user := []string{"ann", "bob", "cid", "dan"}[i%4]
		id := fmt.Sprintf("order-%d", i)
		kvs = append(kvs, id+"="+user)
		want[id] = user + "@" + map[string]string{"ann": "de", "bob": "fr"}[user]
		if want[id] == user+"@" {
			want[id] = user + "@?"
		}
	}
	produceGlobal(t, brokers, orders, kvs...)
	if got := waitRecords(t, brokers, out, 12, time.Minute); got < 12 {
		t.Fatalf("output has %d of 12 records (Run: %v)", got, p.stop())
	}
	got, parts := readOut(t, brokers, out)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("output\n%v\nwant\n%v", got, want)
	}
	if len(parts) != 3 {
		t.Errorf("the output comes from %d of the 3 tasks", len(parts))
	}
	m := p.Metrics().Global["users"]
	if m.Restored != 4 || m.Rebuilds != 1 || m.Updates != 0 {
		t.Errorf("global metrics after the first bootstrap: %+v, want 4 restored, 1 rebuild", m)
	}

	// While running: the table follows its topic.
	produceGlobal(t, brokers, users, "ann=at", "dan=us")
	waitFor(t, 30*time.Second, "the global table to apply 2 updates", func() bool { return p.Metrics().Global["users"].Updates == 2 })
	produceGlobal(t, brokers, orders, "order-20=ann", "order-21=dan")
	if got := waitRecords(t, brokers, out, 14, time.Minute); got < 14 {
		t.Fatalf("output has %d of 14 records (Run: %v)", got, p.stop())
	}
	if err := p.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got, _ = readOut(t, brokers, out)
	if got["order-20"] != "ann@at" || got["order-21"] != "dan@us" {
		t.Errorf("after updates of the table: order-20=%s order-21=%s, want ann@at, dan@us", got["order-20"], got["order-21"])
	}

	// While stopped: one more change of the table. The restart replays
	// only it; bob and dan come from the local copy.
	produceGlobal(t, brokers, users, "eve=se", "dan=<nil>")
	p = startProcessor(t, topo, opts...)
	produceGlobal(t, brokers, orders, "order-30=eve", "order-31=bob", "order-32=dan")
	if got := waitRecords(t, brokers, out, 17, time.Minute); got < 17 {
		t.Fatalf("output has %d of 17 records (Run: %v)", got, p.stop())
	}
	m = p.Metrics().Global["users"]
	if err := p.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if m.Restored != 2 || m.Rebuilds != 0 {
		t.Errorf("global metrics after the restart: %+v, want 2 restored (the records produced while stopped), no rebuild", m)
	}
	got, _ = readOut(t, brokers, out)
	for id, w := range map[string]string{"order-30": "eve@se", "order-31": "bob@fr", "order-32": "dan@?"} {
		if got[id] != w {
			t.Errorf("after the restart: %s=%s, want %s", id, got[id], w)
		}
	}
	t.Logf("metrics: %+v", m)
}

// A global table whose topic does not exist stops Run before anything
// starts, with a configuration error naming the topic.
func TestGlobalTableMissingTopic(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "global-missing")
	orders, out := app+"-orders", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 2, nil)
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	p, err := New(globalOrders(t, orders, app+"-nope", out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, ErrConfig) || !strings.Contains(fmt.Sprint(err), "topic "+app+"-nope of global table users does not exist") {
		t.Fatalf("Run = %v, want ErrConfig naming the missing topic", err)
	}
}

// A principal refused DescribeConfigs on the global table's topic (kfake
// answers TOPIC_AUTHORIZATION_FAILED for every resource, the internal
// topics' too) stops Run at start with ErrConfig naming the ACL, instead of
// reading the whole topic again at every start. On the secured broker:
// TestIntegrationSecureGlobalMissingACL.
func TestGlobalTableDescribeConfigsRefused(t *testing.T) {
	kf := testbroker.NewKfake(t)
	brokers := kf.ListenAddrs()
	app := testbroker.Unique(t, "global-noconfigs")
	orders, users, out := app+"-orders", "users-"+app, app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 2, nil)
	testbroker.CreateTopic(t, brokers, users, 1, map[string]*string{"cleanup.policy": ptr("compact")})
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	kf.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kf.KeepControl()
		dreq := req.(*kmsg.DescribeConfigsRequest)
		resp := dreq.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, res := range dreq.Resources {
			rr := kmsg.NewDescribeConfigsResponseResource()
			rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
			rr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, rr)
		}
		return resp, nil, true
	})
	p, err := New(globalOrders(t, orders, users, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, ErrConfig) || !strings.Contains(fmt.Sprint(err), "DescribeConfigs on topic "+users) {
		t.Fatalf("Run = %v, want ErrConfig naming DescribeConfigs on topic %s", err, users)
	}
}

// A rebuild when the checkpoint cannot be used: the copy is wiped and read
// again, so keys deleted from the topic meanwhile do not survive.
func TestGlobalTableRebuildOnRecreatedTopic(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "global-recreate")
	orders, users, out := app+"-orders", app+"-users", app+"-out"
	testbroker.CreateTopic(t, brokers, orders, 2, nil)
	testbroker.CreateTopic(t, brokers, users, 2, nil)
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	topo := globalOrders(t, orders, users, out)
	produceGlobal(t, brokers, users, "ann=de", "bob=fr")
	opts := append(testOpts(t, brokers, app), StateDir(t.TempDir()))
	p := startProcessor(t, topo, opts...)
	produceGlobal(t, brokers, orders, "o1=ann")
	if got := waitRecords(t, brokers, out, 1, time.Minute); got < 1 {
		t.Fatalf("no output (Run: %v)", p.stop())
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}

	// Recreate the topic without ann.
	adm := testbroker.Admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopics(ctx, users); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the topic to be deleted", func() bool {
		md, err := adm.Metadata(ctx, users)
		return err == nil && md.Topics[users].Err != nil
	})
	testbroker.CreateTopic(t, brokers, users, 2, nil)
	produceGlobal(t, brokers, users, "bob=be")

	p = startProcessor(t, topo, opts...)
	produceGlobal(t, brokers, orders, "o2=ann", "o3=bob")
	if got := waitRecords(t, brokers, out, 3, time.Minute); got < 3 {
		t.Fatalf("output has %d of 3 records (Run: %v)", got, p.stop())
	}
	m := p.Metrics().Global["users"]
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if m.Rebuilds != 1 || m.Restored != 1 {
		t.Errorf("global metrics after the topic was recreated: %+v, want 1 rebuild of 1 record", m)
	}
	got, _ := readOut(t, brokers, out)
	if got["o2"] != "ann@?" || got["o3"] != "bob@be" {
		t.Errorf("after the rebuild: o2=%s o3=%s, want ann@?, bob@be", got["o2"], got["o3"])
	}
}
