package processor

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TaskStatus is what one task of this instance is doing, as Processor.Tasks
// and the admin server's /tasks report it.
type TaskStatus struct {
	Stage     string `json:"stage"`
	Partition int32  `json:"partition"`
	// State is "restoring" or "running".
	State string `json:"state"`
	// LagRecords and LagTime: see the sluice_task_lag_records and
	// sluice_task_lag_seconds metrics (docs/operations.md). Zero before the
	// task's first poll.
	LagRecords int64         `json:"lag_records"`
	LagTime    time.Duration `json:"lag_ns"`
	// LastCommit is when a committed cycle last changed the task; zero
	// before the first.
	LastCommit time.Time `json:"last_commit,omitzero"`
	// Restore is the progress of the task's restore while it runs, nil
	// otherwise.
	Restore *RestoreProgress `json:"restore,omitempty"`
}

// Tasks returns the status of every task this instance holds or restores,
// by stage and partition. Safe to call concurrently with Run.
func (p *Processor) Tasks() []TaskStatus {
	var all []TaskStatus
	now := time.Now()
	for _, st := range p.stages {
		all = append(all, st.taskStatuses(now)...)
	}
	return all
}

// taskStatuses returns the stage's tasks, running and restoring, by
// partition.
func (st *stage) taskStatuses(now time.Time) []TaskStatus {
	lt := st.lag.Load()
	st.mu.Lock()
	out := make([]TaskStatus, 0, len(st.mu.tasks))
	for p, t := range st.mu.tasks {
		if st.mu.revoked[p] {
			continue
		}
		ts := TaskStatus{Stage: st.name, Partition: p, State: "running"}
		if n := t.lastCommit.Load(); n != 0 {
			ts.LastCommit = time.Unix(0, n)
		}
		ts.LagRecords, ts.LagTime = lt.of(p)
		out = append(out, ts)
	}
	st.mu.Unlock()
	st.restores.Lock()
	for p, r := range st.restores.m {
		rp := r.progress(now)
		out = append(out, TaskStatus{Stage: st.name, Partition: p, State: "restoring", Restore: &rp})
	}
	st.restores.Unlock()
	slices.SortFunc(out, func(a, b TaskStatus) int { return int(a.Partition - b.Partition) })
	return out
}

// lagTable is what a stage's polls saw of each input partition, for the
// lag metrics. Written by the stage's loop, read by scrapes.
type lagTable struct {
	parts int32
	cells []lagCell // input i, partition p at i*parts+p
}

type lagCell struct {
	next   atomic.Int64 // the offset after the last polled record
	end    atomic.Int64 // the last stable offset (or high watermark) at that fetch
	behind atomic.Int64 // poll time minus the last polled record's timestamp, ns
}

// of returns the lag of partition p over every input; zero for a nil table.
func (lt *lagTable) of(p int32) (records int64, behind time.Duration) {
	if lt == nil || p < 0 || p >= lt.parts {
		return 0, 0
	}
	for i := int(p); i < len(lt.cells); i += int(lt.parts) {
		c := &lt.cells[i]
		records += max(0, c.end.Load()-c.next.Load())
		behind = max(behind, time.Duration(c.behind.Load()))
	}
	return records, behind
}

// clear forgets what the polls saw of input in's partition p.
func (lt *lagTable) clear(in int, p int32) {
	if lt == nil || p < 0 || p >= lt.parts || in < 0 || (in+1)*int(lt.parts) > len(lt.cells) {
		return
	}
	c := &lt.cells[in*int(lt.parts)+int(p)]
	c.next.Store(0)
	c.end.Store(0)
	c.behind.Store(0)
}

// forgetLag clears the lag of the partitions of input topics that left
// this member (revoked, lost, or missing from an assignment). A partition's
// cell is written only by polls that return its records: without this, a
// partition that comes back with nothing to read would keep the lag it had
// when it left, and after StallTimeout /healthz would call the stage
// stalled. Called from franz-go's rebalance callbacks: atomics only, it
// neither locks nor waits.
func (st *stage) forgetLag(gone map[string][]int32) {
	lt := st.lag.Load()
	if lt == nil {
		return
	}
	for i, in := range st.inputs {
		for _, p := range gone[in.name] {
			lt.clear(i, p)
		}
	}
}

// forgetLagExcept clears the lag of every input partition not in held (an
// assignment, by topic and partition), as forgetLag.
func (st *stage) forgetLagExcept(held map[string]map[int32]bool) {
	lt := st.lag.Load()
	if lt == nil {
		return
	}
	for i, in := range st.inputs {
		for p := int32(0); p < lt.parts; p++ {
			if !held[in.name][p] {
				lt.clear(i, p)
			}
		}
	}
}

// noteLag records the positions and ends of the partitions in fetches (loop
// only; per partition of each poll, never per record). Partitions the stage
// holds no live task for (revoked, dropped: kgo may hand over a few buffered
// records of them) are not recorded, so forgetLag's clearing stays.
func (st *stage) noteLag(fetches kgo.Fetches) {
	lt := st.lag.Load()
	if lt == nil {
		if st.partitions <= 0 {
			return
		}
		lt = &lagTable{parts: st.partitions, cells: make([]lagCell, int(st.partitions)*len(st.inputs))}
		st.lag.Store(lt)
	}
	held := make([]bool, lt.parts)
	st.mu.Lock()
	for p, t := range st.mu.tasks {
		if t != nil && !st.mu.revoked[p] && p >= 0 && p < lt.parts {
			held[p] = true
		}
	}
	st.mu.Unlock()
	now := time.Now()
	for i := range fetches {
		for j := range fetches[i].Topics {
			ft := &fetches[i].Topics[j]
			in := -1
			for k, ref := range st.inputs {
				if ref.name == ft.Topic {
					in = k
				}
			}
			if in < 0 {
				continue
			}
			for k := range ft.Partitions {
				fp := &ft.Partitions[k]
				if fp.Err != nil || fp.Partition < 0 || fp.Partition >= lt.parts || !held[fp.Partition] {
					continue
				}
				end := fp.LastStableOffset
				if end < 0 {
					end = fp.HighWatermark
				}
				c := &lt.cells[in*int(lt.parts)+int(fp.Partition)]
				if len(fp.Records) == 0 {
					// A fetch that advanced past transaction markers
					// (or aborted records) only: kgo hands it over
					// without records, and the position is past
					// them, at the end the broker reported. Without
					// this a caught-up task on transactional input
					// would show a lag of 1 (the last commit marker).
					if end > c.next.Load() {
						c.next.Store(end)
						c.end.Store(end)
					}
					continue
				}
				last := fp.Records[len(fp.Records)-1]
				next := last.Offset + 1
				if last.Attrs.IsTransactional() && next < end {
					// read_committed hands over committed
					// transactions only: the last record's commit
					// marker follows it (if it was the last of its
					// transaction), and the position is past it.
					next++
				}
				c.next.Store(next)
				c.end.Store(end)
				c.behind.Store(int64(now.Sub(last.Timestamp)))
			}
		}
	}
}

// restores are a stage's restores in progress, by partition.
type restores struct {
	sync.Mutex
	m map[int32]*taskRestore
}

// taskRestore is one task's restore in progress.
type taskRestore struct {
	stage     string
	partition int32
	began     time.Time
	logs      []*replayLog // read only by the restoring goroutine
	restored  atomic.Int64
	remaining atomic.Int64
}

func (r *taskRestore) progress(now time.Time) RestoreProgress {
	return RestoreProgress{Stage: r.stage, Partition: r.partition, Restored: r.restored.Load(), Remaining: r.remaining.Load(), Elapsed: now.Sub(r.began)}
}

// update recomputes the progress from the logs' positions (restoring
// goroutine only).
func (r *taskRestore) update() {
	var done, left int64
	for _, l := range r.logs {
		done += l.next - l.from
		left += max(0, l.target-l.next)
	}
	r.restored.Store(done)
	r.remaining.Store(left)
}

// restoreTracker follows the tasks of one restore attempt for the metrics,
// /tasks and the RestoreListener.
type restoreTracker struct {
	st    *stage
	tasks []*taskRestore
}

// trackRestores registers the restores of tasks, each reading the logs of
// its sink, and tells the listener they start.
func (st *stage) trackRestores(tasks []*task, sinks []*replaySink, began time.Time) *restoreTracker {
	tr := &restoreTracker{st: st}
	st.restores.Lock()
	if st.restores.m == nil {
		st.restores.m = map[int32]*taskRestore{}
	}
	for i, t := range tasks {
		r := &taskRestore{stage: st.name, partition: t.id.Partition, began: began, logs: sinks[i].logs}
		r.update()
		st.restores.m[r.partition] = r
		tr.tasks = append(tr.tasks, r)
	}
	st.restores.Unlock()
	now := time.Now()
	for _, r := range tr.tasks {
		st.p.notify.post(listenerEvent{kind: restoreStarted, progress: r.progress(now)})
	}
	return tr
}

// progressed updates every task's progress and tells the listener of those
// that moved.
func (tr *restoreTracker) progressed() {
	now := time.Now()
	for _, r := range tr.tasks {
		before := r.restored.Load()
		r.update()
		if r.restored.Load() != before {
			tr.st.p.notify.post(listenerEvent{kind: restoreProgressed, progress: r.progress(now)})
		}
	}
	if h := tr.st.p.hooks.restoreProgressed; h != nil {
		h(tr.st)
	}
}

// end removes the tasks' restores and tells the listener how they ended.
func (tr *restoreTracker) end(err error) {
	now := time.Now()
	progress := make([]RestoreProgress, len(tr.tasks))
	tr.st.restores.Lock()
	for i, r := range tr.tasks {
		if err == nil {
			r.update()
		}
		progress[i] = r.progress(now)
		if tr.st.restores.m[r.partition] == r {
			delete(tr.st.restores.m, r.partition)
		}
	}
	tr.st.restores.Unlock()
	for _, p := range progress {
		tr.st.p.notify.post(listenerEvent{kind: restoreEnded, progress: p, err: err})
	}
}

// offsetsParts returns, by topic, the partitions of offsets that are in
// parts.
func offsetsParts(offsets map[string]map[int32]kgo.Offset, parts []int32) map[string][]int32 {
	out := make(map[string][]int32, len(offsets))
	for topic, ps := range offsets {
		for p := range ps {
			if slices.Contains(parts, p) {
				out[topic] = append(out[topic], p)
			}
		}
	}
	return out
}
