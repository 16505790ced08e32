package processor

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// wordcountTopics returns the word count's repartition topic and its
// changelog, as the processor names them.
func wordcountTopics(t *testing.T, p *Processor) (repartition, changelog string) {
	t.Helper()
	for _, st := range p.stages {
		for _, out := range st.outputs {
			if out.internal {
				repartition = out.name
			}
		}
		for _, s := range st.stores {
			changelog = s.topic
		}
	}
	if repartition == "" || changelog == "" {
		t.Fatalf("word count without a repartition topic (%q) or changelog (%q)", repartition, changelog)
	}
	return repartition, changelog
}

// runErr runs p until it returns, within timeout.
func runErr(t *testing.T, p *Processor, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := p.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run did not return within %v (%v)", timeout, err)
	}
	return err
}

// Issue 9.6: internal topics that exist already were not checked: a
// changelog that is not compacted loses state by time, a repartition topic
// with time retention (or compaction) loses records the downstream stage
// has not read. Run reports each at start, naming the topic, the setting
// and the fix.
func TestStartChecksInternalTopicConfigs(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "cfgcheck")
	in, out := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, in, 2, nil)
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	p, err := New(wordcount(t, in, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	repartition, changelog := wordcountTopics(t, p)
	testbroker.CreateTopic(t, brokers, changelog, 2, map[string]*string{"cleanup.policy": ptr("delete")})
	testbroker.CreateTopic(t, brokers, repartition, 2, map[string]*string{"cleanup.policy": ptr("delete"), "retention.ms": ptr("3600000")})

	err = runErr(t, p, time.Minute)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Run = %v, want ErrConfig", err)
	}
	for _, want := range []string{
		"changelog topic " + changelog + " has cleanup.policy=delete",
		"--entity-name " + changelog + " --add-config cleanup.policy=compact",
		"repartition topic " + repartition + " has retention.ms=3600000",
		"--entity-name " + repartition + " --add-config retention.ms=-1",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Run's error does not say %q:\n%v", want, err)
		}
	}
}

// The settings sluice creates internal topics with pass its own check: a
// second start on the topics the first created runs.
func TestStartAcceptsTheInternalTopicsItCreated(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "cfgok")
	in, out := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, in, 2, nil)
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	for i := range 2 {
		p, err := New(wordcount(t, in, out), testOpts(t, brokers, app)...)
		if err != nil {
			t.Fatal(err)
		}
		db, err := state.Open(filepath.Join(t.TempDir(), "state"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, st := range p.stages {
			st.db = db
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		adm := testbroker.Admin(t, brokers)
		err = p.prepareTopics(ctx, adm)
		cancel()
		if err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
	}
}

// Issue 14.5: the partition-count message told the user to delete the
// internal topic ("the application's state for it is rebuilt"); for a
// changelog that restarts the store from empty while the input offsets stay
// committed. The message now says not to, and what to do instead.
func TestPartitionMismatchMessageKeepsChangelogs(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "mismatch")
	in, out := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, in, 2, nil)
	testbroker.CreateTopic(t, brokers, out, 2, nil)
	p, err := New(wordcount(t, in, out), testOpts(t, brokers, app)...)
	if err != nil {
		t.Fatal(err)
	}
	_, changelog := wordcountTopics(t, p)
	testbroker.CreateTopic(t, brokers, changelog, 3, changelogConfigs())

	err = runErr(t, p, time.Minute)
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("Run = %v, want ErrConfig", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"changelog topic " + changelog + " has 3 partitions",
		"Do not delete the changelog",
		"delete consumer group " + app + "-",
		"migrate the state to a new application id",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "delete it (the application's state for it is rebuilt)") {
		t.Errorf("the error still tells to delete the changelog:\n%s", msg)
	}
}

// Issue 14.5, at start: a changelog deleted and recreated while the stage's
// group has committed input offsets stops Run with a
// *ChangelogRecreatedError (ErrConfig) before anything runs; with
// AllowChangelogRecreate the processor runs and rebuilds the store from the
// new changelog.
func TestRunRefusesRecreatedChangelog(t *testing.T) {
	f := newFixture(t, 2)
	f.produce(records("a", 50)...)
	topo := counterTopology(t, f.input, f.output, "")
	p, err := New(topo, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.run(p, func() bool { return p.Metrics().Stages["count"].Records == 50 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	r := &restoreRig{t: t, brokers: f.brokers, changelog: f.changelogTopic, adm: testbroker.Admin(t, f.brokers)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.adm.DeleteTopics(ctx, r.changelog); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the changelog to be created again", func() bool {
		resp, err := r.adm.CreateTopic(ctx, f.partitions, -1, changelogConfigs(), r.changelog)
		return err == nil && resp.Err == nil
	})

	p2, err := New(topo, f.opts()...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = f.run(p2, func() bool { return false }, time.Minute)
	var rerr *ChangelogRecreatedError
	if !errors.As(err, &rerr) || !errors.Is(err, ErrConfig) {
		t.Fatalf("Run = %v, want a *ChangelogRecreatedError wrapping ErrConfig", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Run refused after %v", took)
	}

	p3, err := New(topo, f.opts(AllowChangelogRecreate())...)
	if err != nil {
		t.Fatal(err)
	}
	f.produce("k9=x")
	if err := f.run(p3, func() bool { return p3.Metrics().Stages["count"].Records == 1 }, time.Minute); err != nil {
		t.Fatal(err)
	}
	state := f.assertStateMatchesChangelog("count", "totals")
	keys := 0
	for _, m := range state {
		keys += len(m)
	}
	if keys != 1 {
		t.Errorf("after the rebuild the store holds %d keys, want only k9's: %v", keys, state)
	}
}
