package processor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// topicPlan is what the processor knows of one topic after startup checks.
type topicPlan struct {
	name       string
	partitions int32
	id         [16]byte
	// deleteRetention is the changelog's delete.retention.ms (0: unknown).
	deleteRetention time.Duration
}

// prepareTopics checks the topology's topics against the cluster: input and
// sink topics must exist, co-partitioned inputs must agree on their partition
// counts, and internal topics (repartition, changelog) are created with the
// partition count of the stage that writes them, or checked when they exist.
// Every problem is reported at once, with what to change.
func (p *Processor) prepareTopics(ctx context.Context, adm *kadm.Client) error {
	names := map[string]bool{}
	for _, st := range p.stages {
		for _, t := range st.inputs {
			names[t.name] = true
		}
		for _, t := range st.outputs {
			names[t.name] = true
		}
		for _, s := range st.stores {
			names[s.topic] = true
		}
	}
	for _, g := range p.globals {
		names[g.topic] = true
	}
	list := make([]string, 0, len(names))
	names[p.cfg.dlq] = true
	for n := range names {
		list = append(list, n)
	}
	md, err := adm.Metadata(ctx, list...)
	if err != nil {
		return fmt.Errorf("reading topic metadata: %w", err)
	}
	exists := func(t string) (kadm.TopicDetail, bool) {
		d, ok := md.Topics[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return kadm.TopicDetail{}, false
		}
		return d, d.Err == nil
	}
	for t, d := range md.Topics {
		if d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("reading metadata of topic %s: %w", t, d.Err)
		}
	}

	var errs []error
	partitions := map[string]int32{}
	for _, st := range p.stages {
		// The stage's inputs: external ones must exist; internal ones
		// were created by the upstream stage below.
		var n int32
		var first string
		var loops []topicRef
		for _, in := range st.inputs {
			var pc int32
			if in.internal {
				pc = partitions[in.name]
				if pc == 0 && st.writes(in.name) {
					// A declared loop (stream.DeclareLoop): the stage
					// creates it below, with its Partitions or the
					// count of the stage's other inputs.
					if in.partitions == 0 {
						loops = append(loops, in)
						continue
					}
					pc = in.partitions
				}
				if pc == 0 {
					if len(errs) == 0 { // otherwise the upstream stage's error says why
						errs = append(errs, fmt.Errorf("internal topic %s of stage %s has no upstream stage writing it", in.name, st.name))
					}
					continue
				}
			} else {
				d, ok := exists(in.name)
				if !ok {
					errs = append(errs, fmt.Errorf("input topic %s of stage %s does not exist: create it first (for example: kafka-topics.sh --create --topic %s --partitions N)", in.name, st.name, in.name))
					continue
				}
				pc = int32(len(d.Partitions))
			}
			partitions[in.name] = pc
			if n == 0 {
				n, first = pc, in.name
			} else if pc != n {
				errs = append(errs, fmt.Errorf("stage %s reads topics that are not co-partitioned: %s has %d partitions, %s has %d; give them the same partition count", st.name, first, n, in.name, pc))
			}
		}
		if n == 0 && len(loops) > 0 {
			errs = append(errs, fmt.Errorf("stage %s reads only its loop %s, whose partition count comes from the stage's other inputs: give the loop stream.Partitions", st.name, loops[0].name))
			continue
		}
		if n == 0 {
			continue
		}
		st.partitions = n
		for _, l := range loops {
			partitions[l.name] = n
		}

		for _, out := range st.outputs {
			if !out.internal {
				if _, ok := exists(out.name); !ok {
					errs = append(errs, fmt.Errorf("output topic %s of stage %s does not exist: create it first", out.name, st.name))
				}
				continue
			}
			// A repartition (or loop) topic: Kafka Streams gives it
			// the partition count of the writing stage's input, unless
			// stream.Partitions set one.
			want := n
			if out.partitions > 0 {
				want = out.partitions
			}
			if err := p.ensureTopic(ctx, adm, md, out.name, want, map[string]*string{
				"cleanup.policy": ptr("delete"),
				"retention.ms":   ptr("-1"),
			}); err != nil {
				errs = append(errs, err)
				continue
			}
			partitions[out.name] = want
		}
		for _, s := range st.stores {
			if err := p.ensureTopic(ctx, adm, md, s.topic, n, map[string]*string{
				"cleanup.policy": ptr("compact"),
			}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, st := range p.stages {
		if st.cfg.policy == DeadLetter {
			if _, ok := exists(p.cfg.dlq); !ok {
				if err := p.ensureTopic(ctx, adm, md, p.cfg.dlq, 1, nil); err != nil {
					errs = append(errs, err)
				}
			}
			break
		}
	}
	errs = append(errs, p.checkGlobalTopics(md)...)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}

	// Topic ids and delete.retention.ms of the changelogs, for restores.
	var changelogs []string
	for _, st := range p.stages {
		for _, s := range st.stores {
			changelogs = append(changelogs, s.topic)
		}
	}
	if len(changelogs) == 0 {
		return nil
	}
	md, err = adm.Metadata(ctx, changelogs...)
	if err != nil {
		return fmt.Errorf("reading changelog metadata: %w", err)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, changelogs...)
	if err != nil {
		return fmt.Errorf("reading changelog configs: %w", err)
	}
	for _, st := range p.stages {
		for _, s := range st.stores {
			if d, ok := md.Topics[s.topic]; ok && d.Err == nil {
				s.topicID = d.ID
			}
			rc, err := cfgs.On(s.topic, nil)
			if err != nil {
				continue
			}
			for _, c := range rc.Configs {
				if c.Key == "delete.retention.ms" && c.Value != nil {
					if ms, err := strconv.ParseInt(*c.Value, 10, 64); err == nil && ms > 0 {
						s.deleteRetention = time.Duration(ms) * time.Millisecond
					}
				}
			}
		}
	}
	return nil
}

// writes reports whether the stage writes topic (a loop when it also reads
// it).
func (st *stage) writes(topic string) bool {
	for _, out := range st.outputs {
		if out.name == topic {
			return true
		}
	}
	return false
}

// ensureTopic creates an internal topic, or checks the partition count of an
// existing one.
func (p *Processor) ensureTopic(ctx context.Context, adm *kadm.Client, md kadm.Metadata, topic string, partitions int32, configs map[string]*string) error {
	if d, ok := md.Topics[topic]; ok && d.Err == nil {
		if got := int32(len(d.Partitions)); got != partitions {
			return fmt.Errorf("internal topic %s has %d partitions but its stage needs %d: delete it (the application's state for it is rebuilt) or restore the input's partition count", topic, got, partitions)
		}
		return nil
	}
	resp, err := adm.CreateTopic(ctx, partitions, -1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating internal topic %s: %w", topic, err)
	}
	p.cfg.logger.Info("created internal topic", "topic", topic, "partitions", partitions)
	return nil
}

func ptr(s string) *string { return &s }
