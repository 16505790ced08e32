package processor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
)

// restore opens the tasks of the given partitions: for each store it reads
// the task's checkpoint, decides whether local state can be caught up from
// the checkpoint or must be rebuilt from the changelog's start, waits until
// no open transaction holds the changelog partition (last stable offset ==
// high watermark), and replays the committed changelog records up to that
// offset with a read_committed consumer. Data and the new checkpoint are
// applied in one Pebble batch.
//
// The changelogs' topic ids and delete.retention.ms are read again for
// every restore: a changelog deleted and recreated while the application
// runs is noticed. Such a changelog is refused (*ChangelogRecreatedError,
// wrapping ErrConfig) when the stage's group has committed input offsets for
// the partition, unless AllowChangelogRecreate was given.
//
// Records deleted under the replay (the log start offset passed its
// position) are never skipped: the restore starts over and rebuilds those
// tasks from the new log start, at most restoreAttempts times.
//
// REQUIRES: the group fetched these partitions' committed input offsets as
// stable first (KIP-447), so that every transaction of a previous owner that
// committed input offsets has also committed its changelog records.
func (st *stage) restore(ctx context.Context, parts []int32) ([]*task, error) {
	if len(st.stores) == 0 {
		tasks := make([]*task, 0, len(parts))
		for _, p := range parts {
			tasks = append(tasks, newTask(st, p, checkpoint.Checkpoint{}))
		}
		return tasks, nil
	}

	cl, err := st.p.cfg.newClient(st.log)
	if err != nil {
		return nil, fmt.Errorf("restore client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	allow := st.p.cfg.allowChangelogRecreate
	for attempt := 1; ; attempt++ {
		tasks, err := st.restoreOnce(ctx, adm, parts, allow)
		var moved *logMovedError
		if err == nil || !errors.As(err, &moved) || attempt == restoreAttempts {
			return tasks, err
		}
		st.log.Warn("changelog records were deleted during the restore: starting it again, rebuilding from the new log start", "err", err)
	}
}

// ChangelogRecreatedError is the error of a restore (or of Run's start) that
// finds a store's changelog topic deleted and recreated (its topic id
// differs from the one the task's checkpoint names) while the stage's
// consumer group has committed input offsets for the task's partition.
// Rebuilding from the new changelog would restart the store from what the
// new topic holds (aggregates from zero) while the inputs stay consumed, so
// sluice refuses. To go on: reset the application (stop every instance and
// delete the consumer group, so the inputs are read again from the start),
// or migrate the state to a new application id, or accept the loss with
// AllowChangelogRecreate. It wraps ErrConfig.
type ChangelogRecreatedError struct {
	Stage     string
	Store     string
	Topic     string // the changelog topic
	Partition int32
	Group     string // the stage's consumer group, which has committed offsets
	// Was is the topic id in the checkpoint; Now is the topic's id.
	Was, Now [16]byte
}

func (e *ChangelogRecreatedError) Error() string {
	return fmt.Sprintf("%v: changelog topic %s of store %s (stage %s, partition %d) was deleted and recreated (topic id %x, was %x) while consumer group %s has committed input offsets: "+
		"rebuilding from it would restart the store's state from the new topic (aggregates from zero) while the inputs stay consumed. "+
		"Stop every instance and either reset the application (delete consumer group %s so its inputs are read again from the start), "+
		"or migrate the state to a new application id, or start with processor.AllowChangelogRecreate() to accept the loss",
		ErrConfig, e.Topic, e.Store, e.Stage, e.Partition, e.Now, e.Was, e.Group, e.Group)
}

// Unwrap returns ErrConfig.
func (e *ChangelogRecreatedError) Unwrap() error { return ErrConfig }

// refuseRecreated returns a *ChangelogRecreatedError when cp, the checkpoint
// of the task of partition p, names a changelog topic id that differs from
// the topic's id in logs while the stage's group has committed offsets for
// p on any of its inputs. The group's offsets are fetched into *offsets
// once, and only when a topic id differs.
//
// "Input offsets exist" means: the group has a committed offset for
// partition p of at least one of the stage's input topics. Without one the
// stage reads its inputs from the start, and a rebuild from the new
// changelog is consistent with that.
func (st *stage) refuseRecreated(ctx context.Context, adm *kadm.Client, p int32, cp checkpoint.Checkpoint, logs map[string]logInfo, offsets *kadm.OffsetResponses) error {
	var unknown [16]byte
	for _, s := range st.stores {
		was, now := cp.Stores[s.name].TopicID, logs[s.topic].id
		if was == unknown || now == unknown || was == now {
			continue
		}
		if *offsets == nil {
			os, err := adm.FetchOffsets(ctx, st.group)
			if err == nil {
				err = os.Error()
			}
			if errors.Is(err, kerr.GroupIDNotFound) {
				os, err = nil, nil // no group, no offsets
			}
			if err != nil {
				return fmt.Errorf("changelog %s was recreated; reading the committed offsets of group %s: %w", s.topic, st.group, err)
			}
			if os == nil {
				os = kadm.OffsetResponses{}
			}
			*offsets = os
		}
		for _, in := range st.inputs {
			if o, ok := offsets.Lookup(in.name, p); ok && o.Err == nil && o.At >= 0 {
				return &ChangelogRecreatedError{Stage: st.name, Store: s.name, Topic: s.topic, Partition: p, Group: st.group, Was: was, Now: now}
			}
		}
		st.log.Warn("changelog was recreated, and the group has no committed input offset for the partition: rebuilding the store from it",
			"topic", s.topic, "partition", p)
	}
	return nil
}

// checkRecreatedChangelogs runs at start, before any stage: for every
// partition of the stage whose local checkpoint names another changelog
// topic id than logs, it refuses (refuseRecreated) or, with
// AllowChangelogRecreate, wipes the task's local state, which the next
// restore of the task rebuilds anyway; so that a checkpoint of a partition
// this instance no longer owns does not refuse every later start.
func (st *stage) checkRecreatedChangelogs(ctx context.Context, adm *kadm.Client, logs map[string]logInfo, allow bool) error {
	if len(st.stores) == 0 {
		return nil
	}
	var offsets kadm.OffsetResponses
	var unknown [16]byte
	for p := range st.partitions {
		id := state.TaskID{Stage: st.name, Partition: p}
		cp, found, err := st.db.Checkpoint(id)
		if err != nil || !found {
			continue // a corrupt checkpoint is rebuilt by the restore
		}
		if !allow {
			if err := st.refuseRecreated(ctx, adm, p, cp, logs, &offsets); err != nil {
				return err
			}
			continue
		}
		for _, s := range st.stores {
			was, now := cp.Stores[s.name].TopicID, logs[s.topic].id
			if was == unknown || now == unknown || was == now {
				continue
			}
			st.log.Warn("changelog was recreated: wiping the task's local state (AllowChangelogRecreate)", "topic", s.topic, "partition", p)
			if err := st.db.Wipe(id, st.storeNames()); err != nil {
				return fmt.Errorf("task %s/%d: wiping state: %w", st.name, p, err)
			}
			break
		}
	}
	return nil
}

// restoreOnce is one attempt of restore, with the restore client's admin:
// a replay (replay.go) with a sink per task and a log per store of the
// task with something to replay.
func (st *stage) restoreOnce(ctx context.Context, adm *kadm.Client, parts []int32, allow bool) (_ []*task, err error) {
	// began is the final checkpoints' Written, and the progress
	// checkpoints' of rebuilt tasks: taken before any offset is listed,
	// so every record at or past the offsets the restore reaches was
	// written after it (checkpoint.Checkpoint.Written).
	began := st.p.now()
	topics := make([]string, len(st.stores))
	for i, s := range st.stores {
		topics[i] = s.topic
	}
	logs, err := describeChangelogs(ctx, adm, st.log, topics, nil)
	if err != nil {
		return nil, err
	}
	ends, err := st.stableEnds(ctx, adm, topics, parts)
	if err != nil {
		return nil, err
	}

	rp := &replay{cfg: &st.p.cfg, log: st.log, what: "restore of stage " + st.name, noun: "changelog record"}
	defer rp.close()
	var offsets kadm.OffsetResponses // the group's committed offsets, read when needed
	tasks := make([]*task, 0, len(parts))
	sinks := make([]*replaySink, 0, len(parts))
	for _, p := range parts {
		plan, err := st.planTask(ctx, adm, p, logs, ends, began, allow, &offsets)
		if err != nil {
			return nil, err
		}
		t, sink := st.addTask(rp, p, plan, logs, ends)
		tasks, sinks = append(tasks, t), append(sinks, sink)
	}
	tr := st.trackRestores(tasks, sinks, time.Now())
	defer func() { tr.end(err) }()
	rp.progressed = tr.progressed
	replayed, err := rp.run(ctx)
	if err != nil {
		return nil, err
	}
	// Every store reached its target, the high watermark listed after
	// began: the final checkpoints.
	for _, t := range tasks {
		t.cp.Written = began
	}
	if err := rp.finish(); err != nil {
		return nil, err
	}
	st.metrics.restored.Add(replayed)
	return tasks, nil
}

// taskPlan is where the restore of one task starts.
type taskPlan struct {
	cp    checkpoint.Checkpoint // the task's checkpoint; empty after a wipe
	from  map[string]int64      // per store, the first offset to replay
	since time.Time             // the Written of the task's progress checkpoints
}

// planTask reads the checkpoint of the task of partition p, refuses a
// recreated changelog under committed input offsets (refuseRecreated)
// unless allow, and decides with checkpoint.Plan per store, as of began. If
// any store must be rebuilt, the whole task is wiped and every store replays
// from its log start offset. since is the checkpoint's time when the task
// resumes, began when it is rebuilt (progressSince).
func (st *stage) planTask(ctx context.Context, adm *kadm.Client, p int32, logs map[string]logInfo, ends map[string]map[int32]logEnds,
	began time.Time, allow bool, offsets *kadm.OffsetResponses) (taskPlan, error) {
	id := state.TaskID{Stage: st.name, Partition: p}
	cp, found, err := readCheckpoint(st.db, st.log, id)
	if err != nil {
		return taskPlan{}, err
	}
	if found && !allow {
		if err := st.refuseRecreated(ctx, adm, p, cp, logs, offsets); err != nil {
			return taskPlan{}, err
		}
	}
	plan := taskPlan{cp: cp, from: map[string]int64{}, since: progressSince(cp, true, began)}
	rebuild := false
	for _, s := range st.stores {
		d := planStore(cp, found, s.name, logs[s.topic], ends[s.topic][p], began)
		plan.from[s.name] = d.From
		if d.Rebuild {
			rebuild = true
			st.log.Info("rebuilding task from its changelog", "partition", p, "store", s.name, "reason", d.Reason)
		}
	}
	if !rebuild {
		return plan, nil
	}
	st.metrics.rebuilds.Add(1)
	if err := st.db.Wipe(id, st.storeNames()); err != nil {
		return taskPlan{}, fmt.Errorf("task %s/%d: wiping state: %w", st.name, p, err)
	}
	plan.cp, plan.since = checkpoint.Checkpoint{}, began
	for _, s := range st.stores {
		plan.from[s.name] = ends[s.topic][p].start
	}
	return plan, nil
}

// addTask returns the task of partition p as plan starts it, and adds its
// sink and the logs of its stores with something to replay to rp.
//
// The task's checkpoint, t.cp, is the one the restore ends with: every
// store at its target. Until then it carries the Written of the progress
// checkpoints, which say, for each store with a log, the log's position.
func (st *stage) addTask(rp *replay, p int32, plan taskPlan, logs map[string]logInfo, ends map[string]map[int32]logEnds) (*task, *replaySink) {
	t := newTask(st, p, plan.cp)
	t.cp.Stores = make(map[string]checkpoint.Store, len(st.stores))
	t.cp.Written = plan.since
	var sink *replaySink
	sink = rp.addSink(fmt.Sprintf("task %s/%d", st.name, p), p, st.db.NewWriter(), func(w *state.Writer, _ []*replayLog) error {
		cp := t.cp
		cp.Stores = maps.Clone(t.cp.Stores)
		for _, l := range sink.logs {
			cp.Stores[l.store] = checkpoint.Store{TopicID: cp.Stores[l.store].TopicID, Next: l.next}
		}
		return w.SetCheckpoint(t.id, cp)
	})
	for _, s := range st.stores {
		target := ends[s.topic][p].hw
		t.cp.Stores[s.name] = checkpoint.Store{TopicID: logs[s.topic].id, Next: target}
		rp.add(sink, s.topic, p, s.name, plan.from[s.name], target)
	}
	return t, sink
}

// storeNames returns the names of the stage's stores.
func (st *stage) storeNames() []string {
	names := make([]string, len(st.stores))
	for i, s := range st.stores {
		names[i] = s.name
	}
	return names
}

// stableEnds returns the offsets of the topics' partitions (listLogEnds)
// once none of parts is held back by an open transaction (last stable
// offset == high watermark): a replay's targets are the high watermarks. A
// crashed previous owner's open transaction holds them up to the
// transaction timeout.
func (st *stage) stableEnds(ctx context.Context, adm *kadm.Client, topics []string, parts []int32) (map[string]map[int32]logEnds, error) {
	deadline := time.Now().Add(2*st.p.cfg.txnTimeout + 10*time.Second)
	for {
		ends, err := listLogEnds(ctx, adm, topics...)
		if err != nil {
			return nil, err
		}
		held := ""
		for _, topic := range topics {
			for _, p := range parts {
				e, ok := ends[topic][p]
				if !ok {
					return nil, fmt.Errorf("changelog %s has no partition %d", topic, p)
				}
				if e.stable < e.hw && held == "" {
					held = fmt.Sprintf("%s/%d (last stable offset %d, high watermark %d)", topic, p, e.stable, e.hw)
				}
			}
		}
		if held == "" {
			return ends, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("changelog %s stays held by an open transaction past the transaction timeout", held)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
