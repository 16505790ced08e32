package processor

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Time order within a task. A task of a stage with several inputs (a join,
// a merge) reads one partition of each. Kafka returns them in no particular
// order: after downtime, a first poll can hand over a whole backlog of page
// views before the user records they join with, and every view would find
// an empty table. Like Kafka Streams, the stage processes a task's records
// in timestamp order across its partitions, and it waits a little for a
// partition that has nothing buffered while the broker holds records for it
// (KIP-695, max.task.idle.ms):
//
//   - The records a cycle polls are buffered per task and processed at the
//     end of the cycle's gathering, merged by timestamp across the task's
//     input partitions (ties: the order of the stage's inputs, then offset).
//     Within each partition, offset order is kept: a record with an older
//     timestamp behind a newer one is not moved ahead of it.
//   - Before processing, a task that has records for some input partitions
//     and none for another whose last stable offset is past what the stage
//     consumed of it (the broker holds committed records not fetched yet)
//     keeps polling, up to MaxTaskIdle, so that those records join the
//     merge. A wait that ends without them marks the partition as caught up
//     until new records of it arrive, so it is not waited for again on the
//     same evidence (its tail may be transaction markers or aborted
//     records, which a read_committed consumer never returns).
//
// Order is per cycle: a record polled in a later cycle is processed after
// the records of earlier cycles even when its timestamp is older. Stages
// with one input keep offset order, and skip all of this.

// defaultMaxTaskIdle is MaxTaskIdle's default.
const defaultMaxTaskIdle = 500 * time.Millisecond

// MaxTaskIdle sets how long a cycle of a stage with several inputs keeps
// polling for a task whose input partition has no records buffered while
// the broker holds committed records for it that the stage has not fetched
// yet (Kafka Streams' max.task.idle.ms, KIP-695). The records of such a task
// are processed in timestamp order with those records once they arrive, or
// without them when the wait ends. Default 500ms; 0 or a negative value
// never waits (records are still merged in timestamp order within each
// cycle). Unlike Kafka Streams, the stage never waits for records that are
// not on the broker yet. The wait lengthens the cycle's transaction: keep it
// well below the transaction timeout.
func MaxTaskIdle(d time.Duration) StageOpt {
	return stageOpt{func(c *stageCfg) { c.maxTaskIdle = d }}
}

// orderState is what a multi-input stage knows of its input partitions'
// positions. Owned by the loop goroutine.
type orderState struct {
	// next is, per topic and partition, the offset after the last record
	// polled (0: none polled in this session).
	next map[string]map[int32]int64
	// stable is, per topic and partition, the last stable offset the
	// stage last learned (from a fetch, or from ListOffsets).
	stable map[string]map[int32]int64
}

func (o *orderState) get(m map[string]map[int32]int64, topic string, p int32) (int64, bool) {
	v, ok := m[topic][p]
	return v, ok
}

func (o *orderState) set(m *map[string]map[int32]int64, topic string, p int32, v int64) {
	if *m == nil {
		*m = map[string]map[int32]int64{}
	}
	if (*m)[topic] == nil {
		(*m)[topic] = map[int32]int64{}
	}
	(*m)[topic][p] = v
}

// reset forgets everything (a new session, or an abort that rewound).
func (o *orderState) reset() { o.next, o.stable = nil, nil }

// note records what a poll says about the partitions it returned.
func (st *stage) noteFetches(fetches kgo.Fetches) {
	o := &st.order
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 {
			o.set(&o.next, fp.Topic, fp.Partition, fp.Records[n-1].Offset+1)
			if fp.LastStableOffset >= 0 {
				o.set(&o.stable, fp.Topic, fp.Partition, fp.LastStableOffset)
			}
		}
	})
}

// ordered reports whether the stage merges its tasks' records by time.
func (st *stage) ordered() bool { return len(st.inputs) > 1 }

// lagging returns the input partitions that tasks with records in recs are
// missing and that the broker holds unfetched committed records for. It
// asks the broker for the last stable offsets of partitions it knows
// nothing of (one ListOffsets for all).
func (st *stage) lagging(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) map[string][]int32 {
	type tp struct {
		topic string
		p     int32
	}
	have := map[tp]bool{}
	tasks := map[int32]bool{}
	for _, r := range recs {
		have[tp{r.Topic, r.Partition}] = true
		tasks[r.Partition] = true
	}
	o := &st.order
	var missing []tp
	unknown := map[string][]int32{}
	for p := range tasks {
		for _, in := range st.inputs {
			k := tp{in.name, p}
			if have[k] {
				continue
			}
			missing = append(missing, k)
			if _, ok := o.get(o.stable, in.name, p); !ok {
				unknown[in.name] = append(unknown[in.name], p)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if len(unknown) > 0 && cl != nil {
		topics := make([]string, 0, len(unknown))
		for t := range unknown {
			topics = append(topics, t)
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		lso, err := kadm.NewClient(cl).ListCommittedOffsets(lctx, topics...)
		cancel()
		if err == nil {
			for t, ps := range unknown {
				for _, p := range ps {
					if l, ok := lso.Lookup(t, p); ok && l.Err == nil {
						o.set(&o.stable, t, p, l.Offset)
					}
				}
			}
		}
	}
	var committed map[string]map[int32]kgo.EpochOffset
	if cl != nil {
		committed = cl.CommittedOffsets()
	}
	var out map[string][]int32
	for _, k := range missing {
		stable, ok := o.get(o.stable, k.topic, k.p)
		if !ok {
			continue
		}
		next, ok := o.get(o.next, k.topic, k.p)
		if !ok {
			next = st.startOf(committed, k.topic, k.p)
		}
		if stable > next {
			if out == nil {
				out = map[string][]int32{}
			}
			out[k.topic] = append(out[k.topic], k.p)
		}
	}
	return out
}

// startOf returns where consumption of a partition started: the group's
// committed offset, else the absolute start offset resolved at assignment
// (exactly-once), else 0 (the wait is bounded all the same).
func (st *stage) startOf(committed map[string]map[int32]kgo.EpochOffset, topic string, p int32) int64 {
	if eo, ok := committed[topic][p]; ok && eo.Offset >= 0 {
		return eo.Offset
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if t := st.mu.tasks[p]; t != nil {
		if eo, ok := t.start[topic]; ok {
			return eo.Offset
		}
	}
	return 0
}

// settle marks the partitions a wait ended without as caught up, until a
// fetch says otherwise.
func (st *stage) settle(lag map[string][]int32) {
	o := &st.order
	for t, ps := range lag {
		for _, p := range ps {
			if next, ok := o.get(o.next, t, p); ok {
				o.set(&o.stable, t, p, next)
			} else {
				o.set(&o.stable, t, p, 0)
			}
		}
	}
}

// orderByTime reorders recs (one cycle's records, each partition's in offset
// order) so that every task's records come in timestamp order across its
// partitions; tasks stay grouped. It is stable: ties keep the order of the
// stage's inputs, then offsets.
func (st *stage) orderByTime(recs []*kgo.Record) []*kgo.Record {
	rank := make(map[string]int, len(st.inputs))
	for i, in := range st.inputs {
		rank[in.name] = i
	}
	// Per task, per input: the records in offset order.
	type queue struct {
		rank int
		recs []*kgo.Record
	}
	byTask := map[int32][]*queue{}
	for _, r := range recs {
		qs := byTask[r.Partition]
		var q *queue
		for _, x := range qs {
			if x.rank == rank[r.Topic] {
				q = x
				break
			}
		}
		if q == nil {
			q = &queue{rank: rank[r.Topic]}
			byTask[r.Partition] = append(qs, q)
		}
		q.recs = append(q.recs, r)
	}
	parts := make([]int32, 0, len(byTask))
	for p := range byTask {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	out := make([]*kgo.Record, 0, len(recs))
	for _, p := range parts {
		qs := byTask[p]
		slices.SortFunc(qs, func(a, b *queue) int { return cmp.Compare(a.rank, b.rank) })
		for {
			var best *queue
			for _, q := range qs {
				if len(q.recs) == 0 {
					continue
				}
				if best == nil || q.recs[0].Timestamp.Before(best.recs[0].Timestamp) {
					best = q
				}
			}
			if best == nil {
				break
			}
			out = append(out, best.recs[0])
			best.recs = best.recs[1:]
		}
	}
	return out
}
