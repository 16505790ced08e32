package processor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/kgox"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

func TestNewRejectsBadConfig(t *testing.T) {
	topo := wordcount(t, "lines", "counts")
	base := func() []Opt {
		return []Opt{Brokers("127.0.0.1:9092"), ApplicationID("app"), StateDir(t.TempDir())}
	}
	for _, tc := range []struct {
		name string
		opts []Opt
		want string
	}{
		{"no brokers", []Opt{ApplicationID("app"), StateDir("x")}, "no brokers"},
		{"broker without port", append(base(), Brokers("localhost")), `"localhost" is not host:port`},
		{"no app", []Opt{Brokers("h:1"), StateDir("x")}, "no application id"},
		{"bad app", append(base(), ApplicationID("a b")), `application id "a b"`},
		{"no state dir", []Opt{Brokers("h:1"), ApplicationID("app")}, "no state directory"},
		{"bad instance", append(base(), InstanceID("x/y")), `instance id "x/y"`},
		{"short txn timeout", append(base(), TransactionTimeout(time.Millisecond)), "transaction timeout"},
		{"heartbeat above session", append(base(), HeartbeatInterval(time.Minute)), "heartbeat interval"},
		{"commit interval above txn timeout", append(base(), CommitInterval(time.Minute)), "raise processor.TransactionTimeout"},
		{"zero max records", append(base(), MaxRecordsPerTransaction(0)), "max records"},
		{"unknown stage", append(base(), ForStage("nope", ErrorPolicy(Skip))), `ForStage("nope"): the topology has no such stage`},
		{"exactly-once without idempotence", append(base(), Idempotence(false)), "exactly-once needs the idempotent producer"},
		{"idempotence with acks=1", append(base(), WithGuarantee(AtLeastOnce), ProducerAcks(LeaderAck)), "the idempotent producer needs acks=all"},
		{"per-stage at-least-once with acks=0", append(base(), ForStage("split", WithGuarantee(AtLeastOnce), Idempotence(false), ProducerAcks(NoAck))), "stage split: at-least-once cannot know"},
		{"linger above commit interval", append(base(), ProducerLinger(time.Second)), "producer linger"},
		{"bad dead-letter topic", append(base(), DeadLetterTopic("a b")), `dead-letter topic "a b"`},
		{"nil logger", append(base(), Logger(nil)), "logger is nil"},
		{"negative state cache", append(base(), StateCacheSize(-1)), "state cache size -1 is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(topo, tc.opts...)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v\nwant ErrConfig containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(nil, base()...); !errors.Is(err, ErrConfig) {
		t.Errorf("New(nil): %v", err)
	}
	for _, opts := range [][]Opt{
		base(),
		append(base(), WithGuarantee(AtLeastOnce)),
		append(base(), WithGuarantee(AtMostOnce)),
		append(base(), ForStage("by-word", WithGuarantee(AtLeastOnce), ErrorPolicy(DeadLetter))),
		append(base(), WithGuarantee(AtLeastOnce), Idempotence(false), ProducerAcks(LeaderAck), ProducerRetries(3)),
		append(base(), CommitInterval(4*time.Millisecond)), // the default linger follows a short interval
	} {
		if _, err := New(topo, opts...); err != nil {
			t.Errorf("valid options rejected: %v", err)
		}
	}
}

// TestStateCacheSize: StateCacheSize reaches the Pebble state Run opens;
// the default is Pebble's 8 MiB.
func TestStateCacheSize(t *testing.T) {
	topo := wordcount(t, "lines", "counts")
	for _, tc := range []struct {
		opts []Opt
		want int64
	}{
		{nil, 8 << 20},
		{[]Opt{StateCacheSize(32 << 20)}, 32 << 20},
		{[]Opt{StateCacheSize(0)}, 8 << 20}, // 0: Pebble's default
	} {
		p, err := New(topo, append([]Opt{Brokers("127.0.0.1:9092"), ApplicationID("app"), StateDir(t.TempDir())}, tc.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		db, err := p.openState()
		if err != nil {
			t.Fatal(err)
		}
		if got := db.CacheSize(); got != tc.want {
			t.Errorf("cache size %d, want %d", got, tc.want)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDefaultLinger: the producer lingers 5 ms (Kafka 4's linger.ms) unless
// the commit interval is shorter than 10 ms, then half of it; a user's
// linger wins.
func TestDefaultLinger(t *testing.T) {
	for _, tc := range []struct {
		opts []StageOpt
		want time.Duration
	}{
		{nil, 5 * time.Millisecond},
		{[]StageOpt{CommitInterval(4 * time.Millisecond)}, 2 * time.Millisecond},
		{[]StageOpt{ProducerLinger(0)}, 0},
		{[]StageOpt{CommitInterval(0)}, 0},
		{[]StageOpt{CommitInterval(-time.Millisecond)}, 0}, // rejected by New, but not for the linger
		{[]StageOpt{CommitInterval(time.Second), ProducerLinger(20 * time.Millisecond)}, 20 * time.Millisecond},
	} {
		c := defaultCfg()
		for _, o := range tc.opts {
			o.apply(&c)
		}
		if _, _, _, got := c.stageConfig("any").producer(); got != tc.want {
			t.Errorf("linger with %d options = %v, want %v", len(tc.opts), got, tc.want)
		}
	}
}

func TestParseFlags(t *testing.T) {
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce, AtMostOnce} {
		if got, err := ParseGuarantee(g.String()); err != nil || got != g {
			t.Errorf("ParseGuarantee(%q) = %v, %v", g, got, err)
		}
	}
	if _, err := ParseGuarantee("twice"); !errors.Is(err, ErrConfig) {
		t.Errorf("ParseGuarantee(twice): %v", err)
	}
	for _, p := range []Policy{Fail, Skip, DeadLetter} {
		if got, err := ParsePolicy(p.String()); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p, got, err)
		}
	}
	if _, err := ParsePolicy("ignore"); !errors.Is(err, ErrConfig) {
		t.Errorf("ParsePolicy(ignore): %v", err)
	}
}

func TestDefaultInstanceIDDependsOnPathOnly(t *testing.T) {
	a, b := defaultInstanceID("/var/lib/a"), defaultInstanceID("/var/lib/b")
	if a == b || a != defaultInstanceID("/var/lib/a") || !kgox.ValidName(a) {
		t.Fatalf("instance ids %q, %q", a, b)
	}
}

// TestUnreachableBrokers: Run fails within the startup timeout, not hangs.
func TestUnreachableBrokers(t *testing.T) {
	p, err := New(wordcount(t, "lines", "counts"),
		Brokers("127.0.0.1:1"), ApplicationID("app"), StateDir(t.TempDir()), StartupTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = p.Run(context.Background())
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Run: %v, want ErrUnreachable naming the broker", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Run took %v to give up", d)
	}
	if err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "runs only once") {
		t.Errorf("second Run: %v", err)
	}
}

// TestIntegrationMissingTopics: missing input and output topics fail fast
// with errors that name them.
func TestIntegrationMissingTopics(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test")
	}
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "missing")
	in, out := app+"-in", app+"-out"
	p, err := New(wordcount(t, in, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "input topic "+in+" of stage split does not exist") {
		t.Fatalf("Run: %v, want an error naming the input topic", err)
	}
	testbroker.CreateTopic(t, brokers, in, 2, nil)
	p, _ = New(wordcount(t, in, out), testOpts(t, brokers, app)...)
	err = p.Run(context.Background())
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "output topic "+out+" of stage by-word does not exist") {
		t.Fatalf("Run: %v, want an error naming the output topic", err)
	}
}

// TestIntegrationCorruptCheckpointRebuilds: a checkpoint that does not decode
// makes the restore rebuild the task from its changelog instead of failing.
func TestIntegrationCorruptCheckpointRebuilds(t *testing.T) {
	f := newFixture(t, 1)
	f.produce(records("a", 20)...)
	topo := counterTopology(t, f.input, f.output, "")
	p, err := New(topo, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p, func() bool { return p.Metrics().Stages["count"].Records == 20 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	corruptCheckpoint(t, f.stateDir+"/"+f.app, "count", 0)
	f.produce("k1=b")
	p2, err := New(topo, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p2, func() bool { return p2.Metrics().Stages["count"].Records == 1 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	if p2.Metrics().Stages["count"].Rebuilds != 1 {
		t.Errorf("rebuilds = %d, want 1", p2.Metrics().Stages["count"].Rebuilds)
	}
	checkExactCounts(t, testbroker.ReadCommitted(t, f.brokers, f.output), map[string]int{"k0": 4, "k1": 5, "k2": 4, "k3": 4, "k4": 4})
	f.assertStateMatchesChangelog("count", "totals")
}
