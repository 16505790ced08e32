package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// resetFlags are reset's own flags.
type resetFlags struct {
	toEarliest   bool
	toDatetime   string
	byDuration   time.Duration
	keepInternal bool
	dryRun       bool
}

// resetPlan is everything a reset changes, worked out before anything
// changes.
type resetPlan struct {
	deleteGroups []string
	commits      map[string]kadm.Offsets // group -> offsets to commit
	deleteTopics []string
	wipe         string // what to say about the state directories
}

// reset resets the application's input offsets and deletes its internal
// topics, so that its next run reprocesses its input.
func reset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sluice reset", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	var r resetFlags
	c.register(fs)
	fs.BoolVar(&r.toEarliest, "to-earliest", false, "reprocess the input from its start (the default)")
	fs.StringVar(&r.toDatetime, "to-datetime", "", "reprocess the input from the first records at or after `time` (RFC 3339, e.g. 2026-12-01T00:00:00Z)")
	fs.DurationVar(&r.byDuration, "by-duration", 0, "reprocess the input from the first records at or after this long ago (a Go `duration`, e.g. 36h)")
	fs.BoolVar(&r.keepInternal, "keep-internal", false, "keep the internal topics (changelogs, repartition topics) and their state; their offsets go to their end")
	fs.BoolVar(&r.dryRun, "dry-run", false, "print the plan and change nothing")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sluice reset --app A [--to-earliest | --to-datetime T | --by-duration D] [--keep-internal] [--dry-run]\n\n"+
			"Resets every stage's consumer group of the application so that its next run reprocesses the input, and deletes\n"+
			"its internal topics. Stop every instance first: reset refuses while a group has members.\n\n")
		fs.PrintDefaults()
	}
	if err := c.parse(fs, args); err != nil {
		return err
	}
	at, err := r.startTime(time.Now())
	if err != nil {
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
	if active := a.active(); len(active) > 0 {
		return fmt.Errorf("refusing to reset application %s while members are active (stop every instance; a stopped instance that kept its static membership leaves when its session times out):\n  %s", c.app, strings.Join(active, "\n  "))
	}
	plan, err := r.plan(ctx, adm, a, at)
	if err != nil {
		return fmt.Errorf("planning the reset (nothing was changed): %w", err)
	}
	plan.print(stdout, r.dryRun)
	if r.dryRun {
		return nil
	}
	return plan.apply(ctx, adm, stdout, c.timeout)
}

// startTime returns the time to reset to, or the zero time for the start.
func (r *resetFlags) startTime(now time.Time) (time.Time, error) {
	n := 0
	for _, set := range []bool{r.toEarliest, r.toDatetime != "", r.byDuration != 0} {
		if set {
			n++
		}
	}
	if n > 1 {
		return time.Time{}, fmt.Errorf("%w: give one of --to-earliest, --to-datetime and --by-duration", errUsage)
	}
	switch {
	case r.toDatetime != "":
		t, err := time.Parse(time.RFC3339Nano, r.toDatetime)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: --to-datetime: %w (use RFC 3339, e.g. 2026-12-01T00:00:00Z)", errUsage, err)
		}
		return t, nil
	case r.byDuration < 0:
		return time.Time{}, fmt.Errorf("%w: --by-duration must be positive", errUsage)
	case r.byDuration > 0:
		return now.Add(-r.byDuration), nil
	}
	return time.Time{}, nil
}

// plan works out what the reset changes, reading offsets but changing
// nothing.
func (r *resetFlags) plan(ctx context.Context, adm *kadm.Client, a *application, at time.Time) (*resetPlan, error) {
	p := &resetPlan{commits: map[string]kadm.Offsets{}}
	if !r.keepInternal {
		p.deleteGroups = slices.Clone(a.groups)
		p.deleteTopics = slices.Clone(a.internal)
	}
	for _, g := range a.groups {
		committed, err := adm.FetchOffsets(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("group %s: fetching its offsets: %w", g, err)
		}
		if err := committed.Error(); err != nil {
			return nil, fmt.Errorf("group %s: fetching its offsets: %w", g, err)
		}
		var external, internal []string
		for _, t := range committed.Offsets().TopicsSet().Topics() {
			if isInternal(a.app, t) {
				internal = append(internal, t)
			} else {
				external = append(external, t)
			}
		}
		if at.IsZero() && !r.keepInternal {
			continue // a deleted group starts at the inputs' start
		}
		target := kadm.Offsets{}
		if len(external) > 0 {
			var listed kadm.ListedOffsets
			if at.IsZero() {
				listed, err = adm.ListStartOffsets(ctx, external...)
			} else {
				listed, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), external...)
			}
			if err == nil {
				err = listed.Error()
			}
			if err != nil {
				return nil, fmt.Errorf("group %s: listing the offsets of %v: %w", g, external, err)
			}
			listed.Offsets().Each(target.Add)
		}
		if r.keepInternal && len(internal) > 0 {
			// The internal topics' records came from the run being
			// reset: the next run skips them.
			listed, err := adm.ListEndOffsets(ctx, internal...)
			if err == nil {
				err = listed.Error()
			}
			if err != nil {
				return nil, fmt.Errorf("group %s: listing the end offsets of %v: %w", g, internal, err)
			}
			listed.Offsets().Each(target.Add)
		}
		if len(target) > 0 {
			p.commits[g] = target
		}
	}
	switch {
	case r.keepInternal:
		p.wipe = "keep the state directories: the stores keep their state (the changelogs were kept), so aggregates go on from their current values"
	case at.IsZero():
		p.wipe = "the state directories (<state dir>/" + a.app + " on every instance) may be kept: the processors find that the changelogs were recreated and rebuild their stores from them by themselves; wiping them saves disk until then"
	default:
		p.wipe = "wipe the state directory <state dir>/" + a.app + " on every instance before starting it: the groups keep committed offsets, so a processor that finds its changelogs recreated under them refuses to start (ChangelogRecreatedError)"
	}
	return p, nil
}

func (p *resetPlan) print(w io.Writer, dryRun bool) {
	if dryRun {
		fmt.Fprintln(w, "dry run: the reset would")
	}
	for _, g := range p.deleteGroups {
		fmt.Fprintf(w, "delete consumer group %s\n", g)
	}
	for _, g := range slices.Sorted(maps.Keys(p.commits)) {
		for _, o := range p.commits[g].Sorted() {
			fmt.Fprintf(w, "commit group %s %s/%d at offset %d\n", g, o.Topic, o.Partition, o.At)
		}
	}
	for _, t := range p.deleteTopics {
		fmt.Fprintf(w, "delete topic %s\n", t)
	}
	if len(p.deleteGroups)+len(p.commits)+len(p.deleteTopics) == 0 {
		fmt.Fprintln(w, "nothing to change")
	}
	fmt.Fprintln(w, "state:", p.wipe)
}

// apply carries the plan out: groups first, then topics, waiting until the
// topics are gone. Every step can be repeated: after a failure, run the
// reset again.
func (p *resetPlan) apply(ctx context.Context, adm *kadm.Client, w io.Writer, timeout time.Duration) error {
	again := "; nothing after this step was done: run the reset again"
	if len(p.deleteGroups) > 0 {
		resp, err := adm.DeleteGroups(ctx, p.deleteGroups...)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("deleting the consumer groups: %w%s", err, again)
		}
	}
	for _, g := range slices.Sorted(maps.Keys(p.commits)) {
		resp, err := adm.CommitOffsets(ctx, g, p.commits[g])
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("committing the offsets of group %s: %w%s", g, err, again)
		}
	}
	if len(p.deleteTopics) > 0 {
		resp, err := adm.DeleteTopics(ctx, p.deleteTopics...)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("deleting the internal topics: %w%s", err, again)
		}
		// Deletion is asynchronous: wait until the topics are gone, so
		// that a processor started next creates them anew.
		deadline := time.Now().Add(timeout)
		for {
			md, err := adm.ListTopics(ctx, p.deleteTopics...)
			left := 0
			if err == nil {
				for _, t := range md {
					if t.Err == nil {
						left++
					}
				}
				if left == 0 {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the internal topics were deleted but %d still show in the metadata after %v (err %v): wait before starting the application", left, timeout, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	fmt.Fprintln(w, "reset done")
	return nil
}
