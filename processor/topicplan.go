package processor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TopicPlan lists the internal topics a Processor's Run would create, with
// the partition counts, replication factor and settings it would give them:
// what an operator creates beforehand on a cluster where the application's
// principal may not create topics (docs/security.md). `sluice topics --plan`
// reads it as JSON and creates or checks the topics.
type TopicPlan struct {
	// Application is the application id the topics belong to.
	Application string `json:"application"`
	// Topics are the internal topics, by name.
	Topics []PlannedTopic `json:"topics"`
}

// PlannedTopic is one internal topic of a TopicPlan.
type PlannedTopic struct {
	Name string `json:"name"`
	// Kind is "repartition", "changelog" or "dead-letter".
	Kind       string `json:"kind"`
	Partitions int32  `json:"partitions"`
	// ReplicationFactor is the one ReplicationFactor set, or -1 for the
	// brokers' default.replication.factor.
	ReplicationFactor int16 `json:"replication_factor"`
	// Configs are the topic settings Run creates it with and checks at
	// every start (a changelog must be compacted; a repartition topic
	// must keep its records until the purge deletes them).
	Configs map[string]string `json:"configs,omitempty"`
}

// String returns the kind's name as in a TopicPlan.
func (k internalKind) String() string {
	switch k {
	case repartitionTopic:
		return "repartition"
	case changelogTopic:
		return "changelog"
	}
	return "dead-letter"
}

// InternalTopics returns the TopicPlan of the processor's internal topics. It reads
// the partition counts of the topology's topics from the brokers (the
// counts of the internal topics follow from them, by the rules Run applies)
// and creates nothing; it needs Describe on the input topics, as Run does.
// Internal topics that exist already are listed too, as Run would expect
// them; the dead-letter topic is listed when a stage dead-letters. It fails
// with ErrConfig when the topology's topics do not agree (missing input
// topics, co-partitioned inputs of different partition counts), with the
// same messages Run gives.
func (p *Processor) InternalTopics(ctx context.Context) (TopicPlan, error) {
	cl, err := p.cfg.newClient(p.cfg.logger)
	if err != nil {
		return TopicPlan{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer cl.Close()
	sctx, cancel := context.WithTimeout(ctx, p.cfg.startupTimeout)
	defer cancel()
	md, err := p.topicMetadata(sctx, kadm.NewClient(cl))
	if err != nil {
		if errors.Is(err, ErrConfig) {
			return TopicPlan{}, err
		}
		return TopicPlan{}, fmt.Errorf("%w: reading the topics' metadata from %v: %w", ErrUnreachable, p.cfg.brokers, err)
	}
	specs, errs := p.planInternal(md)
	if len(errs) > 0 {
		return TopicPlan{}, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	plan := TopicPlan{Application: p.cfg.app}
	if slices.ContainsFunc(p.stages, func(st *stage) bool { return st.cfg.policy == DeadLetter }) &&
		!slices.ContainsFunc(specs, func(sp internalSpec) bool { return sp.kind == deadLetterTopic }) {
		// It exists: Run would not create it, but a new cluster needs it.
		n := int32(1)
		if d, ok := topicIn(md, p.cfg.dlq); ok {
			n = int32(len(d.Partitions))
		}
		specs = append(specs, internalSpec{p.cfg.dlq, deadLetterTopic, nil, n, nil})
	}
	for _, sp := range specs {
		t := PlannedTopic{Name: sp.topic, Kind: sp.kind.String(), Partitions: sp.partitions, ReplicationFactor: int16(p.cfg.replication)}
		if len(sp.configs) > 0 {
			t.Configs = map[string]string{}
			for k, v := range sp.configs {
				t.Configs[k] = *v
			}
		}
		plan.Topics = append(plan.Topics, t)
	}
	slices.SortFunc(plan.Topics, func(a, b PlannedTopic) int { return cmp.Compare(a.Name, b.Name) })
	return plan, nil
}
