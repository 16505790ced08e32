package processor

import (
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/internal/kgox"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/checkpoint"
	"github.com/sluicehq/sluice/state"
)

// restoreFlushBytes bounds the memory of a restore's write batch.
const restoreFlushBytes = 8 << 20

// cursor is a restore's position in one changelog partition.
type cursor struct {
	t      *task
	store  string
	next   int64 // next offset to read
	target int64 // stop here
}

// restore opens the tasks of the given partitions: for each store it reads
// the task's checkpoint, decides whether local state can be caught up from
// the checkpoint or must be rebuilt from the changelog's start, waits until
// no open transaction holds the changelog partition (last stable offset ==
// high watermark), and replays the committed changelog records up to that
// offset with a read_committed consumer. Data and the new checkpoint are
// applied in one Pebble batch.
//
// REQUIRES: the group fetched these partitions' committed input offsets as
// stable first (KIP-447), so that every transaction of a previous owner that
// committed input offsets has also committed its changelog records.
func (st *stage) restore(ctx context.Context, parts []int32) ([]*task, error) {
	tasks := make([]*task, 0, len(parts))
	if len(st.stores) == 0 {
		for _, p := range parts {
			tasks = append(tasks, newTask(st, p, checkpoint.Checkpoint{}))
		}
		return tasks, nil
	}

	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(st.p.cfg.brokers...),
		kgo.DialTimeout(st.p.cfg.dialTimeout),
		kgo.WithLogger(kgox.Logger(st.log)),
	}, st.p.cfg.kgoOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("restore client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	topics := make([]string, len(st.stores))
	for i, s := range st.stores {
		topics[i] = s.topic
	}
	start, end, err := st.stableEnds(ctx, adm, topics, parts)
	if err != nil {
		return nil, err
	}

	cursors := map[string]map[int32]*cursor{}
	// progress is the checkpoint of a task part-way through its restore:
	// each store with a cursor is replayed up to the cursor, the others to
	// their target already.
	progress := func(t *task) checkpoint.Checkpoint {
		cp := checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{}, Inputs: t.cp.Inputs, Written: st.p.now()}
		for _, s := range st.stores {
			cs := t.cp.Stores[s.name]
			if c := cursors[s.topic][t.id.Partition]; c != nil {
				cs.Next = c.next
			}
			cp.Stores[s.name] = cs
		}
		return cp
	}
	consume := map[string]map[int32]kgo.Offset{}
	writers := map[int32]*state.Writer{}
	defer func() {
		for _, w := range writers {
			w.Discard()
		}
	}()
	now := st.p.now()
	for _, p := range parts {
		id := state.TaskID{Stage: st.name, Partition: p}
		cp, found, err := st.db.Checkpoint(id)
		if errors.Is(err, checkpoint.ErrCorrupt) {
			// Local state is a cache of the changelog: rebuild it.
			st.log.Warn("corrupt checkpoint: rebuilding the task from its changelog", "partition", p, "err", err)
			cp, found, err = checkpoint.Checkpoint{}, false, nil
		}
		if err != nil {
			return nil, fmt.Errorf("task %s/%d: reading checkpoint: %w", st.name, p, err)
		}
		rebuild := false
		decisions := map[string]checkpoint.Decision{}
		for _, s := range st.stores {
			d := checkpoint.Plan(cp, found, s.name, checkpoint.LogState{
				TopicID:         s.topicID,
				LogStart:        start[s.topic][p],
				HighWatermark:   end[s.topic][p],
				DeleteRetention: s.deleteRetention,
			}, now)
			decisions[s.name] = d
			if d.Rebuild {
				rebuild = true
				st.log.Info("rebuilding task from its changelog", "partition", p, "store", s.name, "reason", d.Reason)
			}
		}
		if rebuild {
			names := make([]string, len(st.stores))
			for i, s := range st.stores {
				names[i] = s.name
			}
			st.metrics.rebuilds.Add(1)
			if err := st.db.Wipe(id, names); err != nil {
				return nil, fmt.Errorf("task %s/%d: wiping state: %w", st.name, p, err)
			}
			cp = checkpoint.Checkpoint{}
		}
		t := newTask(st, p, cp)
		t.cp.Stores = map[string]checkpoint.Store{}
		for k, v := range cp.Stores {
			t.cp.Stores[k] = v
		}
		tasks = append(tasks, t)
		writers[p] = st.db.NewWriter()
		for _, s := range st.stores {
			from := decisions[s.name].From
			if rebuild {
				from = start[s.topic][p]
			}
			target := end[s.topic][p]
			t.cp.Stores[s.name] = checkpoint.Store{TopicID: s.topicID, Next: target}
			if from >= target {
				continue
			}
			if cursors[s.topic] == nil {
				cursors[s.topic] = map[int32]*cursor{}
				consume[s.topic] = map[int32]kgo.Offset{}
			}
			cursors[s.topic][p] = &cursor{t: t, store: s.name, next: from, target: target}
			consume[s.topic][p] = kgo.NewOffset().At(from)
		}
	}

	remaining := 0
	for _, ps := range cursors {
		remaining += len(ps)
	}
	var replayed int64
	if remaining > 0 {
		rc, err := kgo.NewClient(append([]kgo.Opt{
			kgo.SeedBrokers(st.p.cfg.brokers...),
			kgo.DialTimeout(st.p.cfg.dialTimeout),
			kgo.WithLogger(kgox.Logger(st.log)),
			kgo.ConsumePartitions(consume),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			// Commit and abort markers tell the position: the last
			// offset of a changelog partition is usually a marker.
			kgo.KeepControlRecords(),
		}, st.p.cfg.kgoOpts...)...)
		if err != nil {
			return nil, fmt.Errorf("restore consumer: %w", err)
		}
		defer rc.Close()
		for remaining > 0 {
			fetches := rc.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("restore of stage %s interrupted: %w", st.name, err)
			}
			var ferr error
			fetches.EachError(func(topic string, p int32, err error) {
				ferr = errors.Join(ferr, fmt.Errorf("restoring %s/%d: %w", topic, p, err))
			})
			if ferr != nil {
				return nil, ferr
			}
			for it := fetches.RecordIter(); !it.Done(); {
				r := it.Next()
				c := cursors[r.Topic][r.Partition]
				if c == nil || c.next >= c.target || r.Offset >= c.target {
					continue
				}
				c.next = r.Offset + 1
				if !r.Attrs.IsControl() {
					w := writers[r.Partition]
					var err error
					if r.Value == nil {
						err = w.Delete(c.store, r.Partition, r.Key)
					} else {
						err = w.Put(c.store, r.Partition, r.Key, r.Value)
					}
					if err != nil {
						return nil, fmt.Errorf("restoring %s/%d: %w", r.Topic, r.Partition, err)
					}
					replayed++
					if w.Len() > restoreFlushBytes {
						// Apply with a checkpoint of the progress so far,
						// so an interrupted restore resumes from here.
						if err := w.SetCheckpoint(c.t.id, progress(c.t)); err != nil {
							return nil, err
						}
						if err := w.Apply(); err != nil {
							return nil, fmt.Errorf("restoring %s/%d: %w", r.Topic, r.Partition, err)
						}
					}
				}
				if c.next >= c.target {
					remaining--
				}
			}
		}
	}

	for _, t := range tasks {
		w := writers[t.id.Partition]
		t.cp.Written = now
		if err := w.SetCheckpoint(t.id, t.cp); err != nil {
			return nil, err
		}
		if err := w.Apply(); err != nil {
			return nil, fmt.Errorf("task %s/%d: applying restore: %w", st.name, t.id.Partition, err)
		}
	}
	st.metrics.restored.Add(replayed)
	return tasks, nil
}

// stableEnds returns the log start offsets and the high watermarks of the
// topics' partitions once no open transaction holds them back (last stable
// offset == high watermark). A crashed previous owner's open transaction
// holds them up to the transaction timeout.
func (st *stage) stableEnds(ctx context.Context, adm *kadm.Client, topics []string, parts []int32) (start, end map[string]map[int32]int64, err error) {
	deadline := time.Now().Add(2*st.p.cfg.txnTimeout + 10*time.Second)
	for {
		starts, err := adm.ListStartOffsets(ctx, topics...)
		if err == nil {
			err = starts.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("listing changelog start offsets: %w", err)
		}
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("listing changelog end offsets: %w", err)
		}
		stable, err := adm.ListCommittedOffsets(ctx, topics...)
		if err == nil {
			err = stable.Error()
		}
		if err != nil {
			return nil, nil, fmt.Errorf("listing changelog stable offsets: %w", err)
		}
		start, end = map[string]map[int32]int64{}, map[string]map[int32]int64{}
		held := ""
		for _, topic := range topics {
			start[topic], end[topic] = map[int32]int64{}, map[int32]int64{}
			for _, p := range parts {
				s, _ := starts.Lookup(topic, p)
				e, ok := ends.Lookup(topic, p)
				l, _ := stable.Lookup(topic, p)
				if !ok {
					return nil, nil, fmt.Errorf("changelog %s has no partition %d", topic, p)
				}
				start[topic][p], end[topic][p] = s.Offset, e.Offset
				if l.Offset < e.Offset && held == "" {
					held = fmt.Sprintf("%s/%d (last stable offset %d, high watermark %d)", topic, p, l.Offset, e.Offset)
				}
			}
		}
		if held == "" {
			return start, end, nil
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("changelog %s stays held by an open transaction past the transaction timeout", held)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
