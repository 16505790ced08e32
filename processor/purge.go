package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// purgeRepartitions deletes, every interval, the records of each repartition
// topic that the stage reading it has committed (Kafka's DeleteRecords), as
// Kafka Streams does: repartition topics are created with unlimited retention
// so that nothing is deleted before it was processed. Any instance may purge;
// the offsets only move forward.
//
// A purge the brokers refuse (no Delete ACL on the topic) ends it with a
// *FatalError: the repartition topic would otherwise grow without bound,
// unnoticed. The permission is probed at once (probeDelete), so a missing
// ACL stops Run within seconds of its start, not at the first tick. Any
// other failure is logged and tried again at the next tick.
func (p *Processor) purgeRepartitions(ctx context.Context, adm *kadm.Client, interval time.Duration) error {
	type reader struct{ stage, group string }
	readers := map[string]reader{} // repartition topic -> stage reading it
	for _, st := range p.stages {
		for _, in := range st.inputs {
			if in.internal {
				readers[in.name] = reader{st.name, st.group}
			}
		}
	}
	if len(readers) == 0 || interval <= 0 {
		return nil
	}
	for topic, r := range readers {
		if err := p.probeDelete(ctx, adm, topic); denied(err) {
			return p.purgeDenied(r.stage, topic, err)
		}
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		for topic, r := range readers {
			if err := p.purge(ctx, adm, topic, r.group); denied(err) {
				return p.purgeDenied(r.stage, topic, err)
			}
		}
	}
}

// denied reports whether err is the brokers' refusal of a purge's request.
func denied(err error) bool {
	return errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed)
}

// purgeDenied is the error of a purge of topic, read by stage, that the
// brokers refused with err.
func (p *Processor) purgeDenied(stage, topic string, err error) error {
	return &FatalError{Stage: stage, Err: fmt.Errorf("purging repartition topic %s: %w", topic, err),
		Fix: fmt.Sprintf("grant the application's principal Delete on the topics prefixed %q (docs/security.md), or turn purging off with processor.PurgeInterval(0) and give the repartition topics a retention", p.cfg.app+"-")}
}

// probeFor bounds how long probeDelete asks again after an answer that
// tells nothing (a topic created a moment ago that the metadata does not
// show yet, a leader moving).
const probeFor = 30 * time.Second

// probeDelete asks the brokers to delete the records of topic's partition
// 0 below offset 0: nothing, since no offset is below 0, but the brokers
// authorize the request (Delete on the topic) before they look at the
// offset, so it tells at once whether purging will be refused, with no
// effect on the topic. It asks again, every half second for up to probeFor,
// while the answer is another error, and returns the last error for the
// caller to judge: an error other than a refusal means the probe could not
// tell, and the purge's ticks will.
func (p *Processor) probeDelete(ctx context.Context, adm *kadm.Client, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, probeFor)
	defer cancel()
	var o kadm.Offsets
	o.Add(kadm.Offset{Topic: topic, Partition: 0, At: 0})
	for {
		resp, err := adm.DeleteRecords(ctx, o)
		if err == nil {
			err = resp.Error()
		}
		if err == nil || denied(err) {
			return err
		}
		p.cfg.logger.Debug("purge: probing the Delete permission", "topic", topic, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// purge deletes the records of topic below what group committed. It
// returns the error of a refused request, for purgeRepartitions to judge.
func (p *Processor) purge(ctx context.Context, adm *kadm.Client, topic, group string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		p.cfg.logger.Debug("purge: fetching committed offsets", "group", group, "err", err)
		return err
	}
	var del kadm.Offsets
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At > 0 {
			del.Add(kadm.Offset{Topic: topic, Partition: o.Partition, At: o.At})
		}
	})
	if len(del) == 0 {
		return nil
	}
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		p.cfg.logger.Debug("purge: deleting records", "topic", topic, "err", err)
	}
	return err
}
