package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
)

// application is what Kafka holds of one sluice application.
type application struct {
	app       string
	groups    []string             // the stages' consumer groups, <app>-<stage>
	described kadm.DescribedGroups // the groups, described
	// internal are its internal topics: changelogs and repartition
	// topics.
	internal []string
}

// isInternal reports whether topic is one of app's internal topics.
func isInternal(app, topic string) bool {
	return strings.HasPrefix(topic, app+"-") && (strings.HasSuffix(topic, "-changelog") || strings.HasSuffix(topic, "-repartition"))
}

// find finds app's consumer groups and internal topics, and describes the
// groups. It fails when there are neither.
func find(ctx context.Context, adm *kadm.Client, app string) (*application, error) {
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing consumer groups: %w", err)
	}
	a := &application{app: app}
	for _, g := range listed.Groups() {
		if strings.HasPrefix(g, app+"-") && len(g) > len(app)+1 {
			a.groups = append(a.groups, g)
		}
	}
	slices.Sort(a.groups)
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	for _, t := range topics.Names() {
		if isInternal(app, t) {
			a.internal = append(a.internal, t)
		}
	}
	slices.Sort(a.internal)
	if len(a.groups) == 0 && len(a.internal) == 0 {
		return nil, fmt.Errorf("no application %q: no consumer group %s-<stage> and no internal topic %s-<name>-changelog or -repartition (check --app and --brokers)", app, app, app)
	}
	if len(a.groups) > 0 {
		a.described, err = adm.DescribeGroups(ctx, a.groups...)
		if err != nil {
			return nil, fmt.Errorf("describing consumer groups: %w", err)
		}
		if err := a.described.Error(); err != nil {
			return nil, fmt.Errorf("describing consumer groups: %w", err)
		}
	}
	return a, nil
}

// stage returns the stage name of group.
func (a *application) stage(group string) string { return strings.TrimPrefix(group, a.app+"-") }

// active returns the groups that have members, with a line per member.
func (a *application) active() []string {
	var out []string
	for _, g := range a.described.Sorted() {
		for _, m := range g.Members {
			id := m.MemberID
			if m.InstanceID != nil {
				id = *m.InstanceID
			}
			out = append(out, fmt.Sprintf("group %s: member %s on %s", g.Group, id, m.ClientHost))
		}
	}
	return out
}
