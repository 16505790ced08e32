package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/processor"
)

// topics creates the internal topics of a plan (processor.TopicPlan, as a
// processor binary's -print-topics writes it: sluice has no topology of its
// own), or checks the partition counts and settings of those that exist.
// It fails, after going through every topic, when one differs from the plan
// in a way the processor's start would refuse.
func topics(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice topics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	planFile := fs.String("plan", "", "JSON `file` of the internal topics, as the processor binary's -print-topics writes it (processor.TopicPlan; required)")
	rf := fs.Int("replication-factor", 0, "replication factor of the topics created (default: the plan's; -1 there means the brokers' default.replication.factor)")
	dryRun := fs.Bool("dry-run", false, "print what would be created and check what exists; change nothing")
	if err := c.parse(fs, args); err != nil {
		return err
	}
	if *planFile == "" {
		return fmt.Errorf("%w: --plan is required: write it with the processor binary's -print-topics (same -app and -brokers), or processor.Processor.InternalTopics", errUsage)
	}
	plan, err := readPlan(*planFile, c.app)
	if err != nil {
		return err
	}
	adm, closeAdm, err := c.admin(ctx)
	if err != nil {
		return err
	}
	defer closeAdm()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	names := make([]string, len(plan.Topics))
	for i, t := range plan.Topics {
		names[i] = t.Name
	}
	md, err := adm.Metadata(ctx, names...)
	if err != nil {
		return fmt.Errorf("reading the metadata of the plan's topics: %w", err)
	}
	var existing []string
	for _, n := range names {
		if d, ok := md.Topics[n]; ok && d.Err == nil {
			existing = append(existing, n)
		} else if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("reading the metadata of topic %s: %w", n, d.Err)
		}
	}
	configs := map[string]map[string]string{}
	if len(existing) > 0 {
		rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
		if err != nil {
			return fmt.Errorf("reading the settings of topics %v: %w", existing, err)
		}
		for _, rc := range rcs {
			if rc.Err != nil {
				return fmt.Errorf("reading the settings of topic %s: %w", rc.Name, rc.Err)
			}
			m := map[string]string{}
			for _, cfg := range rc.Configs {
				if cfg.Value != nil {
					m[cfg.Key] = *cfg.Value
				}
			}
			configs[rc.Name] = m
		}
	}

	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	var problems []string
	for _, t := range plan.Topics {
		settings := describeConfigs(t.Configs)
		if d, ok := md.Topics[t.Name]; ok && d.Err == nil {
			diffs := differences(t, int32(len(d.Partitions)), configs[t.Name])
			verdict := "ok"
			if len(diffs) > 0 {
				verdict = "DIFFERS"
				problems = append(problems, diffs...)
			}
			fmt.Fprintf(w, "exists\t%s\t%s\tpartitions %d\t%s\t%s\n", t.Name, t.Kind, len(d.Partitions), settings, verdict)
			continue
		}
		replication := t.ReplicationFactor
		if *rf != 0 {
			replication = int16(*rf)
		}
		if *dryRun {
			fmt.Fprintf(w, "would create\t%s\t%s\tpartitions %d\t%s\treplication %s\n", t.Name, t.Kind, t.Partitions, settings, rfName(replication))
			continue
		}
		cfgs := map[string]*string{}
		for k, v := range t.Configs {
			cfgs[k] = &v
		}
		resp, err := adm.CreateTopic(ctx, t.Partitions, replication, cfgs, t.Name)
		if err == nil {
			err = resp.Err
		}
		if errors.Is(err, kerr.TopicAlreadyExists) {
			// Created a moment ago (by a run before, or someone
			// else) and not in the metadata the broker answered
			// with yet.
			fmt.Fprintf(w, "exists\t%s\t%s\tnot in the metadata yet\t%s\tunchecked: run again to check it\n", t.Name, t.Kind, settings)
			continue
		}
		if err != nil {
			w.Flush()
			return fmt.Errorf("creating topic %s (%d partitions, replication %s, %s): %w (the topics listed above are done; run again once fixed)", t.Name, t.Partitions, rfName(replication), settings, err)
		}
		fmt.Fprintf(w, "created\t%s\t%s\tpartitions %d\t%s\treplication %d\n", t.Name, t.Kind, t.Partitions, settings, resp.ReplicationFactor)
	}
	w.Flush()
	if len(problems) > 0 {
		return fmt.Errorf("%d difference(s) from the plan, which the processor's start refuses:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return nil
}

// readPlan reads and checks the plan in file, for application app.
func readPlan(file, app string) (processor.TopicPlan, error) {
	var plan processor.TopicPlan
	b, err := os.ReadFile(file)
	if err != nil {
		return plan, fmt.Errorf("%w: --plan: %w", errUsage, err)
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		return plan, fmt.Errorf("%w: --plan %s is not a topic plan (JSON, as -print-topics writes it): %w", errUsage, file, err)
	}
	if plan.Application != app {
		return plan, fmt.Errorf("%w: --plan %s is the plan of application %q, not of --app %q", errUsage, file, plan.Application, app)
	}
	if len(plan.Topics) == 0 {
		return plan, fmt.Errorf("%w: --plan %s lists no topics: the application has no internal topics to create", errUsage, file)
	}
	for _, t := range plan.Topics {
		switch {
		case t.Name == "" || t.Partitions <= 0:
			return plan, fmt.Errorf("%w: --plan %s: topic %q with %d partitions: every topic needs a name and a partition count", errUsage, file, t.Name, t.Partitions)
		case t.Kind != "dead-letter" && !strings.HasPrefix(t.Name, app+"-"):
			return plan, fmt.Errorf("%w: --plan %s: %s topic %s is not named %s-...: not an internal topic of %s", errUsage, file, t.Kind, t.Name, app, app)
		}
	}
	return plan, nil
}

// differences returns how topic t, which exists with partitions and the
// settings configs, differs from the plan in what the processor's start
// checks: the partition count (any for the dead-letter topic), and the
// settings of the plan, except that a changelog may delete as well as
// compact (cleanup.policy=compact,delete, which the start only warns of).
func differences(t processor.PlannedTopic, partitions int32, configs map[string]string) []string {
	var out []string
	if t.Kind != "dead-letter" && partitions != t.Partitions {
		out = append(out, fmt.Sprintf("%s has %d partitions, the plan %d (delete and create it again only if nothing in it matters: a changelog holds its store's state)", t.Name, partitions, t.Partitions))
	}
	for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
		want, got := t.Configs[k], configs[k]
		if got == want || (k == "cleanup.policy" && want == "compact" && slices.Contains(strings.Split(got, ","), "compact")) {
			continue
		}
		out = append(out, fmt.Sprintf("%s has %s=%s, the plan %s (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config %s=%s)", t.Name, k, got, want, t.Name, k, want))
	}
	return out
}

func describeConfigs(c map[string]string) string {
	if len(c) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, k+"="+c[k])
	}
	return strings.Join(parts, ",")
}

func rfName(rf int16) string {
	if rf < 0 {
		return "default"
	}
	return fmt.Sprint(rf)
}
