package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/kgox"
	"github.com/sluicehq/sluice/internal/state"
)

// restoreFlushBytes bounds the memory of a restore's write batch. A
// variable for tests.
var restoreFlushBytes = 8 << 20

// restoreAttempts bounds how often one restore starts over because the
// changelog's records it was reading were deleted under it (offset out of
// range): each attempt rebuilds the tasks concerned from the new log start.
const restoreAttempts = 3

// restoreStall is how long a restore's replay may go without receiving any
// record before it fails. Every record up to the targets is committed when
// the replay starts (the last stable offset reached them), so a healthy
// broker returns them at once; a replay that receives nothing is stuck (a
// broker that does not answer, a position nothing can move) and must not
// block its stage's group forever. The failed restore goes back to franz-go,
// which rejoins the group and restores again. A variable for tests.
var restoreStall = time.Minute

// testHookBetweenListings, when set (tests only), runs in stableEnds after
// the high watermarks were listed and before the last stable offsets are.
var testHookBetweenListings func()

// cursor is a restore's position in one changelog partition.
type cursor struct {
	t      *task
	store  string
	next   int64 // next offset to read
	target int64 // stop here
	done   bool  // a record or control marker at or past target was seen
}

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

// logMovedError is a replay that hit OFFSET_OUT_OF_RANGE: its position is
// no longer in the changelog partition (the log start offset moved past it,
// or the log was truncated).
type logMovedError struct {
	topic     string
	partition int32
	offset    int64
	err       error
}

func (e *logMovedError) Error() string {
	return fmt.Sprintf("restoring %s/%d: offset %d is no longer in the log: %v", e.topic, e.partition, e.offset, e.err)
}

func (e *logMovedError) Unwrap() error { return e.err }

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

// restoreOnce is one attempt of restore, with the restore client's admin.
func (st *stage) restoreOnce(ctx context.Context, adm *kadm.Client, parts []int32, allow bool) ([]*task, error) {
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
	start, end, err := st.stableEnds(ctx, adm, topics, parts)
	if err != nil {
		return nil, err
	}

	cursors := map[string]map[int32]*cursor{}
	// progressSince is, per task, the Written of its progress
	// checkpoints: the time of the checkpoint it resumes from, or the
	// moment its rebuild began. Not now: records past a progress
	// checkpoint's offsets may be older than the restore.
	progressSince := map[int32]time.Time{}
	// progress is the checkpoint of a task part-way through its restore:
	// each store with a cursor is replayed up to the cursor, the others to
	// their target already.
	progress := func(t *task) checkpoint.Checkpoint {
		cp := checkpoint.Checkpoint{Stores: map[string]checkpoint.Store{}, Inputs: t.cp.Inputs, Written: progressSince[t.id.Partition]}
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
	var offsets kadm.OffsetResponses // the group's committed offsets, read when needed
	tasks := make([]*task, 0, len(parts))
	for _, p := range parts {
		plan, err := st.planTask(ctx, adm, p, logs, start, end, began, allow, &offsets)
		if err != nil {
			return nil, err
		}
		cp := plan.cp
		progressSince[p] = plan.since
		t := newTask(st, p, cp)
		t.cp.Stores = map[string]checkpoint.Store{}
		for k, v := range cp.Stores {
			t.cp.Stores[k] = v
		}
		tasks = append(tasks, t)
		writers[p] = st.db.NewWriter()
		for _, s := range st.stores {
			from := plan.from[s.name]
			target := end[s.topic][p]
			t.cp.Stores[s.name] = checkpoint.Store{TopicID: logs[s.topic].id, Next: target}
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

	replayed, err := st.replay(ctx, cursors, consume, writers, progress)
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		w := writers[t.id.Partition]
		t.cp.Written = began
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
// resumes, began when it is rebuilt (see checkpoint.Checkpoint.Written).
func (st *stage) planTask(ctx context.Context, adm *kadm.Client, p int32, logs map[string]logInfo, start, end map[string]map[int32]int64,
	began time.Time, allow bool, offsets *kadm.OffsetResponses) (taskPlan, error) {
	id := state.TaskID{Stage: st.name, Partition: p}
	cp, found, err := st.db.Checkpoint(id)
	if errors.Is(err, checkpoint.ErrCorrupt) {
		// Local state is a cache of the changelog: rebuild it.
		st.log.Warn("corrupt checkpoint: rebuilding the task from its changelog", "partition", p, "err", err)
		cp, found, err = checkpoint.Checkpoint{}, false, nil
	}
	if err != nil {
		return taskPlan{}, fmt.Errorf("task %s/%d: reading checkpoint: %w", st.name, p, err)
	}
	if found && !allow {
		if err := st.refuseRecreated(ctx, adm, p, cp, logs, offsets); err != nil {
			return taskPlan{}, err
		}
	}
	plan := taskPlan{cp: cp, from: map[string]int64{}, since: cp.Written}
	if began.Before(cp.Written) {
		plan.since = began // a clock that went back
	}
	rebuild := false
	for _, s := range st.stores {
		d := checkpoint.Plan(cp, found, s.name, checkpoint.LogState{
			TopicID:         logs[s.topic].id,
			LogStart:        start[s.topic][p],
			HighWatermark:   end[s.topic][p],
			DeleteRetention: logs[s.topic].deleteRetention,
		}, began)
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
		plan.from[s.name] = start[s.topic][p]
	}
	return plan, nil
}

// storeNames returns the names of the stage's stores.
func (st *stage) storeNames() []string {
	names := make([]string, len(st.stores))
	for i, s := range st.stores {
		names[i] = s.name
	}
	return names
}

// replay reads the changelog partitions of cursors from their positions
// (consume) up to their targets with a read_committed consumer and writes
// the records to the tasks' writers, applying a writer with its task's
// progress checkpoint whenever it holds more than restoreFlushBytes. It
// returns the number of data records replayed.
//
// A cursor is done when a record or control marker at or past its target
// arrives: read_committed delivers a partition's records in offset order, so
// nothing below the target is still to come. (An abort marker at the target
// itself, from a transaction that ended between the listings of the high
// watermark and of the last stable offset, is such a record; waiting for an
// offset below the target that never comes would block forever.)
//
// The consumer never resets its position: an offset out of range returns a
// *logMovedError, on which restore starts over and rebuilds. A replay that
// receives nothing for restoreStall fails.
func (st *stage) replay(ctx context.Context, cursors map[string]map[int32]*cursor, consume map[string]map[int32]kgo.Offset,
	writers map[int32]*state.Writer, progress func(*task) checkpoint.Checkpoint) (int64, error) {
	remaining := 0
	for _, ps := range cursors {
		remaining += len(ps)
	}
	if remaining == 0 {
		return 0, nil
	}
	rc, err := kgo.NewClient(append(append([]kgo.Opt{
		kgo.SeedBrokers(st.p.cfg.brokers...),
		kgo.DialTimeout(st.p.cfg.dialTimeout),
		kgo.WithLogger(kgox.Logger(st.log)),
	}, st.p.cfg.kgoOpts...),
		// After the user's options: these are what the replay's
		// correctness rests on.
		kgo.ConsumePartitions(consume),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit and abort markers tell the position: the last
		// offset of a changelog partition is usually a marker.
		kgo.KeepControlRecords(),
		// Out of range is an error, never a silent jump to the log
		// start (records skipped) or the end.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)...)
	if err != nil {
		return 0, fmt.Errorf("restore consumer: %w", err)
	}
	defer rc.Close()
	var replayed int64
	for remaining > 0 {
		pctx, cancel := context.WithTimeout(ctx, restoreStall)
		fetches := rc.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("restore of stage %s interrupted: %w", st.name, err)
		}
		var ferr error
		var moved *logMovedError
		stalled := false
		fetches.EachError(func(topic string, p int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				stalled = true
			case errors.Is(err, kerr.OffsetOutOfRange):
				if moved == nil {
					moved = &logMovedError{topic: topic, partition: p, offset: -1, err: err}
					if c := cursors[topic][p]; c != nil {
						moved.offset = c.next
					}
				}
			default:
				ferr = errors.Join(ferr, fmt.Errorf("restoring %s/%d: %w", topic, p, err))
			}
		})
		if moved != nil {
			return 0, moved
		}
		if ferr != nil {
			return 0, ferr
		}
		if stalled && fetches.NumRecords() == 0 {
			return 0, fmt.Errorf("restore of stage %s received no changelog record for %v with %d partitions short of their targets (%s)",
				st.name, restoreStall, remaining, describeCursors(cursors))
		}
		var done map[string][]int32
		for it := fetches.RecordIter(); !it.Done(); {
			r := it.Next()
			c := cursors[r.Topic][r.Partition]
			if c == nil || c.done {
				continue
			}
			if r.Offset >= c.target {
				c.done = true
				remaining--
				if done == nil {
					done = map[string][]int32{}
				}
				done[r.Topic] = append(done[r.Topic], r.Partition)
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
					return 0, fmt.Errorf("restoring %s/%d: %w", r.Topic, r.Partition, err)
				}
				replayed++
				if w.Len() > restoreFlushBytes {
					// Apply with a checkpoint of the progress so far,
					// so an interrupted restore resumes from here.
					if err := w.SetCheckpoint(c.t.id, progress(c.t)); err != nil {
						return 0, err
					}
					if err := w.Apply(); err != nil {
						return 0, fmt.Errorf("restoring %s/%d: %w", r.Topic, r.Partition, err)
					}
				}
			}
			if c.next >= c.target {
				c.done = true
				remaining--
				if done == nil {
					done = map[string][]int32{}
				}
				done[r.Topic] = append(done[r.Topic], r.Partition)
			}
		}
		if len(done) > 0 {
			rc.PauseFetchPartitions(done) // nothing more to read there
		}
	}
	return replayed, nil
}

// describeCursors lists the positions of the cursors not done, for errors.
func describeCursors(cursors map[string]map[int32]*cursor) string {
	s := ""
	for topic, ps := range cursors {
		for p, c := range ps {
			if c.done {
				continue
			}
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s/%d at %d of %d", topic, p, c.next, c.target)
		}
	}
	return s
}

// stableEnds returns the log start offsets and the high watermarks of the
// topics' partitions once no open transaction holds them back (last stable
// offset == high watermark). A crashed previous owner's open transaction
// holds them up to the transaction timeout.
//
// The two are listed in two requests, the high watermark first: a
// transaction that ends in between puts its marker at or past the returned
// high watermark, and replay ends there (see replay).
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
		if testHookBetweenListings != nil {
			testHookBetweenListings()
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
