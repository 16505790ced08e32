package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
	"github.com/sluicehq/sluice/processor"
)

// writePlan writes the word count's topic plan, as its binary's
// -print-topics would, and returns the file.
func writePlan(t *testing.T, brokers []string, app, input, output string) (string, processor.TopicPlan) {
	t.Helper()
	p, err := processor.New(wordcount(t, input, output), processor.Brokers(brokers...), processor.ApplicationID(app), processor.StateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := p.InternalTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, plan
}

// TestIntegrationTopics runs `sluice topics` on the word count's plan: the
// dry run creates nothing, the run creates the repartition topic and the
// changelog with the plan's partitions and settings, a second run finds
// them right, a setting changed by hand is reported (exit 1), and the word
// count runs on the topics it made.
func TestIntegrationTopics(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "tp")
	input, output := app+"-lines", app+"-counts"
	testbroker.CreateTopic(t, brokers, input, 3, nil)
	testbroker.CreateTopic(t, brokers, output, 3, nil)
	file, plan := writePlan(t, brokers, app, input, output)
	want := map[string]processor.PlannedTopic{}
	for _, pt := range plan.Topics {
		want[pt.Name] = pt
	}
	repart, changelog := app+"-by-word-repartition", app+"-counts-changelog"
	if len(want) != 2 || want[repart].Partitions != 3 || want[changelog].Partitions != 3 ||
		want[repart].Configs["retention.ms"] != "-1" || want[changelog].Configs["cleanup.policy"] != "compact" {
		t.Fatalf("plan = %+v", plan)
	}

	base := []string{"topics", "--brokers", strings.Join(brokers, ","), "--app", app, "--plan", file}
	code, out, errOut := sluice(append(base, "--dry-run")...)
	if code != 0 || strings.Count(out, "would create") != 2 {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	adm := testbroker.Admin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tds, err := adm.ListTopics(ctx, repart, changelog)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{repart, changelog} {
		if d, ok := tds[name]; ok && d.Err == nil {
			t.Fatalf("the dry run created %s", name)
		}
	}

	code, out, errOut = sluice(base...)
	if code != 0 || strings.Count(out, "created") != 2 {
		t.Fatalf("topics: exit %d\n%s%s", code, out, errOut)
	}
	// A topic just created reaches the broker's metadata a moment later.
	waitFor(t, func() bool {
		adm = testbroker.Admin(t, brokers) // not one whose cached metadata knows them missing
		tds, err = adm.ListTopics(ctx, repart, changelog)
		return err == nil && len(tds[repart].Partitions) == 3 && len(tds[changelog].Partitions) == 3
	})
	var rcs kadm.ResourceConfigs
	waitFor(t, func() bool {
		rcs, err = adm.DescribeTopicConfigs(ctx, repart, changelog)
		return err == nil && len(rcs) == 2 && rcs[0].Err == nil && rcs[1].Err == nil
	})
	for _, rc := range rcs {
		if len(tds[rc.Name].Partitions) != 3 {
			t.Errorf("%s has %d partitions, want 3", rc.Name, len(tds[rc.Name].Partitions))
		}
		for k, v := range want[rc.Name].Configs {
			got := ""
			for _, c := range rc.Configs {
				if c.Key == k && c.Value != nil {
					got = *c.Value
				}
			}
			if got != v {
				t.Errorf("%s has %s=%q, want %q", rc.Name, k, got, v)
			}
		}
	}
	code, out, errOut = sluice(base...)
	if code != 0 || strings.Count(out, "exists") != 2 || strings.Contains(out, "DIFFERS") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errOut)
	}

	// The word count runs on them.
	cl := testbroker.NewClient(t, brokers, kgo.DefaultProduceTopic(input))
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("a b a")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r := start(t, brokers, app, input, output, t.TempDir())
	waitOutput(t, brokers, output, 3, r)
	r.stop(t)

	// A setting changed by hand: reported, exit 1.
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("60000")}}, repart); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		code, out, errOut = sluice(base...)
		return code == 1
	})
	if !strings.Contains(errOut, "retention.ms=60000") || !strings.Contains(out, "DIFFERS") {
		t.Errorf("changed retention: exit %d\n%s%s", code, out, errOut)
	}

	// Another application's plan: a usage error.
	code, _, errOut = sluice("topics", "--brokers", strings.Join(brokers, ","), "--app", app+"x", "--plan", file)
	if code != 2 || !strings.Contains(errOut, "plan of application") {
		t.Errorf("--app of another application: exit %d %s", code, errOut)
	}
}

// waitFor polls cond for up to a minute (a config change reaches every
// broker through the metadata log).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within a minute")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
