package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// status prints the application's stages, members, tasks, lag and internal
// topics.
func status(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	if err := c.parse(fs, args); err != nil {
		return err
	}
	adm, closeAdm, err := c.admin(ctx)
	if err != nil {
		return err
	}
	defer closeAdm()
	a, err := find(ctx, adm, c.app)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintf(w, "application %s\n", c.app)
	if len(a.groups) > 0 {
		lags, err := adm.Lag(ctx, a.groups...)
		if err != nil {
			return fmt.Errorf("computing lag: %w", err)
		}
		for _, g := range a.described.Sorted() {
			fmt.Fprintf(w, "\nstage %s\tgroup %s\tstate %s\tmembers %d\n", a.stage(g.Group), g.Group, g.State, len(g.Members))
			for _, m := range g.Members {
				id := m.MemberID
				if m.InstanceID != nil {
					id = *m.InstanceID
				}
				var tasks []string
				if ca, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range ca.Topics {
						for _, p := range t.Partitions {
							tasks = append(tasks, fmt.Sprintf("%s/%d", t.Topic, p))
						}
					}
				}
				slices.Sort(tasks)
				fmt.Fprintf(w, "  member %s\thost %s\ttasks %s\n", id, m.ClientHost, strings.Join(tasks, " "))
			}
			l := lags[g.Group]
			if err := l.Error(); err != nil {
				fmt.Fprintf(w, "  lag: %v\n", err)
				continue
			}
			fmt.Fprintf(w, "  TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER\n")
			for _, pl := range l.Lag.Sorted() {
				member := "-"
				if pl.Member != nil {
					member = pl.Member.MemberID
					if pl.Member.InstanceID != nil {
						member = *pl.Member.InstanceID
					}
				}
				committed := "-"
				if pl.Commit.At >= 0 {
					committed = fmt.Sprint(pl.Commit.At)
				}
				fmt.Fprintf(w, "  %s\t%d\t%s\t%d\t%d\t%s\n", pl.Topic, pl.Partition, committed, pl.End.Offset, pl.Lag, member)
			}
		}
	}
	if len(a.internal) > 0 {
		fmt.Fprintf(w, "\ninternal topics\n")
		md, err := adm.ListTopics(ctx, a.internal...)
		if err != nil {
			return fmt.Errorf("describing internal topics: %w", err)
		}
		cfgs, err := adm.DescribeTopicConfigs(ctx, a.internal...)
		if err != nil {
			return fmt.Errorf("describing internal topics' configs: %w", err)
		}
		for _, t := range a.internal {
			var shown []string
			if rc, err := cfgs.On(t, nil); err == nil {
				for _, cfg := range rc.Configs {
					switch cfg.Key {
					case "cleanup.policy", "retention.ms", "min.compaction.lag.ms", "delete.retention.ms", "segment.bytes":
						if cfg.Value != nil {
							shown = append(shown, cfg.Key+"="+*cfg.Value)
						}
					}
				}
			}
			slices.Sort(shown)
			fmt.Fprintf(w, "  %s\tpartitions %d\t%s\n", t, len(md[t].Partitions), strings.Join(shown, " "))
		}
	}
	return nil
}
