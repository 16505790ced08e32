package processor

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// purgeRepartitions deletes, every interval, the records of each repartition
// topic that the stage reading it has committed (Kafka's DeleteRecords), as
// Kafka Streams does: repartition topics are created with unlimited retention
// so that nothing is deleted before it was processed. Any instance may purge;
// the offsets only move forward.
func (p *Processor) purgeRepartitions(ctx context.Context, adm *kadm.Client, interval time.Duration) {
	readers := map[string]string{} // repartition topic -> group reading it
	for _, st := range p.stages {
		for _, in := range st.inputs {
			if in.internal {
				readers[in.name] = st.group
			}
		}
	}
	if len(readers) == 0 || interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for topic, group := range readers {
			p.purge(ctx, adm, topic, group)
		}
	}
}

func (p *Processor) purge(ctx context.Context, adm *kadm.Client, topic, group string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	committed, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		p.cfg.logger.Debug("purge: fetching committed offsets", "group", group, "err", err)
		return
	}
	var del kadm.Offsets
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil && o.At > 0 {
			del.Add(kadm.Offset{Topic: topic, Partition: o.Partition, At: o.At})
		}
	})
	if len(del) == 0 {
		return
	}
	resp, err := adm.DeleteRecords(ctx, del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		p.cfg.logger.Debug("purge: deleting records", "topic", topic, "err", err)
	}
}
