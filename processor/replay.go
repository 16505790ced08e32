package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/state"
)

// A changelog replay reads changelog partitions with a read_committed
// consumer into local Pebble state, and applies the data together with
// checkpoints of the offsets reached. The restore of a stage's tasks
// (restore.go) and the bootstrap of a global table's copy (global.go) are
// replays; each keeps only what is its own: a task's plan, its check for
// recreated changelogs and its wait for stable ends; a global table's plan
// over all of a topic's partitions, and the following and refreshing that
// go on after the bootstrap.
//
// A replay has three phases:
//
//  1. Plan. listLogEnds lists the partitions' log start offsets, high
//     watermarks and last stable offsets; readCheckpoint reads a checkpoint,
//     taking a corrupt one for an empty one; planStore decides with
//     checkpoint.Plan where a store's replay starts; progressSince gives the
//     Written of the checkpoints a replay writes part-way. The caller wipes
//     what must be rebuilt, then adds a replaySink per unit of local state
//     (a task, a global table's copy) and a replayLog per changelog
//     partition to read into it.
//  2. Run. replay.run reads every log up to its target with a consumer that
//     keeps control records and never resets its position. A sink whose
//     writer holds more than restoreFlushBytes is applied with its progress
//     checkpoints, so that an interrupted replay resumes from there.
//  3. Finish. replay.finish applies every sink with its final checkpoints.
//     A replay that follows keeps its consumer reading (replay.apply);
//     replay.close closes the consumer and drops what was not applied.

// restoreFlushBytes bounds the memory of a replay's write batch. A
// variable for tests.
var restoreFlushBytes = 8 << 20

// restoreAttempts bounds how often one restore or bootstrap starts over
// because the changelog's records it was reading were deleted under it
// (offset out of range, *logMovedError): each attempt plans again, and
// rebuilds from the new log start what needs it.
const restoreAttempts = 3

// restoreStall is how long a replay may go without receiving any record
// before it fails. Every record up to the targets is committed when the
// replay starts (the last stable offset reached them), so a healthy broker
// returns them at once; a replay that receives nothing is stuck (a broker
// that does not answer, a position nothing can move) and must not block its
// stage's group, or Run's start, forever. A failed restore goes back to
// franz-go, which rejoins the group and restores again; a failed bootstrap
// fails Run. A variable for tests.
var restoreStall = time.Minute

// testHookBetweenListings, when set (tests only), runs in listLogEnds
// after the high watermarks were listed and before the last stable offsets
// are.
var testHookBetweenListings func()

// logEnds is what a replay's plan knows of one changelog partition's
// offsets.
type logEnds struct {
	start int64 // log start offset (0 when the listing had none)
	hw    int64 // high watermark
	// stable is the last stable offset: below hw while a transaction is
	// open on the partition; -1 when the listing had none.
	stable int64
}

// listLogEnds lists the log start offsets, high watermarks and last stable
// offsets of every partition of the topics, by topic and partition.
//
// The high watermarks are listed before the last stable offsets, in
// another request: a transaction that ends in between puts its marker at or
// past the listed high watermark, where a replay that targets it ends (see
// replay.apply).
func listLogEnds(ctx context.Context, adm *kadm.Client, topics ...string) (map[string]map[int32]logEnds, error) {
	list := func(what string, f func(context.Context, ...string) (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		os, err := f(ctx, topics...)
		if err == nil {
			err = os.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("listing the %s of %s: %w", what, strings.Join(topics, ", "), err)
		}
		return os, nil
	}
	starts, err := list("start offsets", adm.ListStartOffsets)
	if err != nil {
		return nil, err
	}
	ends, err := list("end offsets", adm.ListEndOffsets)
	if err != nil {
		return nil, err
	}
	if testHookBetweenListings != nil {
		testHookBetweenListings()
	}
	stable, err := list("last stable offsets", adm.ListCommittedOffsets)
	if err != nil {
		return nil, err
	}
	out := map[string]map[int32]logEnds{}
	ends.Each(func(o kadm.ListedOffset) {
		e := logEnds{hw: o.Offset, stable: -1}
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok {
			e.start = s.Offset
		}
		if l, ok := stable.Lookup(o.Topic, o.Partition); ok {
			e.stable = l.Offset
		}
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]logEnds{}
		}
		out[o.Topic][o.Partition] = e
	})
	return out, nil
}

// readCheckpoint reads the checkpoint kept under id. A corrupt one
// (checkpoint.ErrCorrupt) is logged and returned as found and empty, so that
// checkpoint.Plan rebuilds ("no checkpoint for store"): local state is a
// cache of its changelog.
func readCheckpoint(db *state.DB, log *slog.Logger, id state.TaskID) (checkpoint.Checkpoint, bool, error) {
	cp, found, err := db.Checkpoint(id)
	if errors.Is(err, checkpoint.ErrCorrupt) {
		log.Warn("corrupt checkpoint: rebuilding the local state from the changelog", "checkpoint", id, "err", err)
		return checkpoint.Checkpoint{}, true, nil
	}
	if err != nil {
		return checkpoint.Checkpoint{}, false, fmt.Errorf("reading checkpoint %s: %w", id, err)
	}
	return cp, found, nil
}

// planStore decides with checkpoint.Plan, as of now, whether store resumes
// from cp (found reports whether there was one) or is rebuilt, given its
// changelog partition's ends and the topic's li.
func planStore(cp checkpoint.Checkpoint, found bool, store string, li logInfo, e logEnds, now time.Time) checkpoint.Decision {
	return checkpoint.Plan(cp, found, store, checkpoint.LogState{
		TopicID:         li.id,
		LogStart:        e.start,
		HighWatermark:   e.hw,
		DeleteRetention: li.deleteRetention,
	}, now)
}

// progressSince returns the Written of the checkpoints a replay writes
// part-way, for local state that resumes from cp or (when not resumed) is
// rebuilt, in a replay that began at began: cp's own time when resuming,
// since the records past a progress checkpoint's offsets may be as old as
// cp; began when rebuilding, and when cp is from the future (a clock that
// went back). See checkpoint.Checkpoint.Written.
func progressSince(cp checkpoint.Checkpoint, resumed bool, began time.Time) time.Time {
	if !resumed || began.Before(cp.Written) {
		return began
	}
	return cp.Written
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

// replay is the run and finish phases of a changelog replay: it reads its
// logs into their sinks. The caller sets the fields above logs, then adds
// sinks and logs; a replay is not safe for concurrent use.
type replay struct {
	cfg  *cfg
	log  *slog.Logger
	what string // the replay in errors: "restore of stage count", "bootstrap"
	noun string // what it reads, in the stall error: "changelog record"
	// follow makes a replay that reads on past its targets (a global
	// table's copy): see apply.
	follow bool
	// progressed, if set, is called after each batch run applied.
	progressed func()

	logs      map[string]map[int32]*replayLog
	sinks     []*replaySink
	remaining int         // logs not done
	cl        *kgo.Client // nil before run, and when nothing is to be read
}

// replayLog is a replay's position in one changelog partition.
type replayLog struct {
	topic     string
	partition int32
	store     string // the store its records are written to
	sink      *replaySink
	from      int64 // the offset the replay started at
	next      int64 // the next offset to read
	target    int64 // see replay.apply
	done      bool
	moved     bool // next moved since the sink was last applied
}

// replaySink is one unit of local state a replay writes (a task, a global
// table's copy): a state.Writer, the partition its stores' records go to,
// and the checkpoints that say what it holds.
//
// INVARIANT: the sink's writer is applied only together with the
// checkpoints of its logs' positions, so that Pebble never holds a
// checkpoint past the data it has, nor data past a checkpoint a replay of
// the changelog from that checkpoint would not bring back.
type replaySink struct {
	name      string // in errors: "task count/0"
	w         *state.Writer
	partition int32
	// checkpoints adds to w the checkpoints of what the sink holds once w
	// is applied. moved are the sink's logs whose positions moved since the
	// last apply (all of them at finish).
	checkpoints func(w *state.Writer, moved []*replayLog) error
	logs        []*replayLog
}

// addSink adds a sink writing to partition of its stores, applied with
// checkpoints (see replaySink), and returns it. close discards what it did
// not apply.
func (rp *replay) addSink(name string, partition int32, w *state.Writer, checkpoints func(*state.Writer, []*replayLog) error) *replaySink {
	s := &replaySink{name: name, w: w, partition: partition, checkpoints: checkpoints}
	rp.sinks = append(rp.sinks, s)
	return s
}

// add adds the replay of topic/partition into store of s, from offset from
// up to target, and returns it. Unless the replay follows, a partition with
// nothing to read (from >= target) is left out and add returns nil. Once
// run started, the consumer starts reading the partition at once.
func (rp *replay) add(s *replaySink, topic string, partition int32, store string, from, target int64) *replayLog {
	if from >= target && !rp.follow {
		return nil
	}
	l := &replayLog{topic: topic, partition: partition, store: store, sink: s, from: from, next: from, target: target, done: from >= target}
	if rp.logs == nil {
		rp.logs = map[string]map[int32]*replayLog{}
	}
	if rp.logs[topic] == nil {
		rp.logs[topic] = map[int32]*replayLog{}
	}
	rp.logs[topic][partition] = l
	s.logs = append(s.logs, l)
	if !l.done {
		rp.remaining++
	}
	if rp.cl != nil {
		rp.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}})
	}
	return l
}

// position returns the replay's log of topic/partition, or nil.
func (rp *replay) position(topic string, partition int32) *replayLog {
	return rp.logs[topic][partition]
}

// start creates the consumer of the logs, unless there is nothing to read.
func (rp *replay) start() error {
	if rp.cl != nil || (rp.remaining == 0 && !rp.follow) {
		return nil
	}
	consume := map[string]map[int32]kgo.Offset{}
	for topic, ps := range rp.logs {
		consume[topic] = map[int32]kgo.Offset{}
		for p, l := range ps {
			consume[topic][p] = kgo.NewOffset().At(l.next)
		}
	}
	cl, err := rp.cfg.newClient(rp.log,
		kgo.ConsumePartitions(consume),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit and abort markers tell the position: the last offset
		// of a changelog partition is usually a marker.
		kgo.KeepControlRecords(),
		// Out of range is an error, never a silent jump to the log start
		// (records skipped, possibly with tombstones of keys the local
		// state holds) or to the end: the restore or bootstrap starts
		// over and rebuilds, and a following copy stops.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	if err != nil {
		return fmt.Errorf("%s: consumer: %w", rp.what, err)
	}
	rp.cl = cl
	return nil
}

// run reads until every log is done, writing their records to their sinks
// (see apply). It returns the number of data records written, also when it
// fails.
//
// The consumer never resets its position: an offset out of range fails run
// with a *logMovedError, on which the caller plans again (and rebuilds). A
// run that receives nothing for restoreStall fails.
func (rp *replay) run(ctx context.Context) (int64, error) {
	if err := rp.start(); err != nil {
		return 0, err
	}
	var n int64
	for rp.remaining > 0 {
		fetches, err := rp.poll(ctx)
		if err != nil {
			return n, err
		}
		m, err := rp.apply(fetches)
		n += m
		if err != nil {
			return n, err
		}
		if rp.progressed != nil {
			rp.progressed()
		}
	}
	return n, nil
}

// poll polls once, waiting at most restoreStall, and turns the fetches'
// errors into run's.
func (rp *replay) poll(ctx context.Context) (kgo.Fetches, error) {
	pctx, cancel := context.WithTimeout(ctx, restoreStall)
	fetches := rp.cl.PollFetches(pctx)
	cancel()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s interrupted: %w", rp.what, err)
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
				if l := rp.position(topic, p); l != nil {
					moved.offset = l.next
				}
			}
		default:
			ferr = errors.Join(ferr, fmt.Errorf("restoring %s/%d: %w", topic, p, err))
		}
	})
	switch {
	case moved != nil:
		return nil, moved
	case ferr != nil:
		return nil, ferr
	case stalled && fetches.NumRecords() == 0:
		return nil, fmt.Errorf("%s received no %s for %v with %d partitions short of their targets (%s)",
			rp.what, rp.noun, restoreStall, rp.remaining, rp.shortOfTargets())
	}
	return fetches, nil
}

// apply writes the fetched records of the replay's logs to their sinks,
// applying a sink with its progress checkpoints whenever its writer holds
// more than restoreFlushBytes, and returns the number of data records
// written.
//
// A log is done when a record or control marker at or past its target
// arrives, or the one just below it: read_committed delivers a partition's
// records in offset order, so nothing below the target is still to come.
// (An abort marker at the target itself, from a transaction that ended
// between the listings of the high watermark and of the last stable offset,
// is such a record; waiting for an offset below the target that never comes
// would block forever.)
//
// Unless the replay follows, a record at or past a log's target is not
// written, the log's position moves to the target when it is done, and a
// done partition is no longer fetched. A replay that follows writes every
// record, reads on, and applies every sink whose logs moved at the end of
// each call: its copy is read while it follows.
func (rp *replay) apply(fetches kgo.Fetches) (int64, error) {
	var n int64
	var done map[string][]int32
	for it := fetches.RecordIter(); !it.Done(); {
		r := it.Next()
		l := rp.position(r.Topic, r.Partition)
		if l == nil || r.Offset < l.next || (l.done && !rp.follow) {
			continue
		}
		if r.Offset < l.target || rp.follow {
			l.next, l.moved = r.Offset+1, true
			if !r.Attrs.IsControl() {
				if err := l.sink.write(l.store, r); err != nil {
					return n, fmt.Errorf("restoring %s/%d: %w", r.Topic, r.Partition, err)
				}
				n++
			}
		}
		if !l.done && (r.Offset >= l.target || l.next >= l.target) {
			l.done = true
			rp.remaining--
			if !rp.follow {
				l.next, l.moved = l.target, true
				if done == nil {
					done = map[string][]int32{}
				}
				done[r.Topic] = append(done[r.Topic], r.Partition)
			}
		}
	}
	if len(done) > 0 {
		rp.cl.PauseFetchPartitions(done) // nothing more to read there
	}
	if rp.follow {
		for _, s := range rp.sinks {
			if err := s.apply(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// write writes r, a data record, to store: a tombstone deletes its key.
// When the writer then holds more than restoreFlushBytes, it applies it
// with the progress so far, so that an interrupted replay resumes from
// here.
func (s *replaySink) write(store string, r *kgo.Record) error {
	var err error
	if r.Value == nil {
		err = s.w.Delete(store, s.partition, r.Key)
	} else {
		err = s.w.Put(store, s.partition, r.Key, r.Value)
	}
	if err != nil {
		return err
	}
	if s.w.Len() > restoreFlushBytes {
		return s.apply(false)
	}
	return nil
}

// apply adds the checkpoints of the logs that moved (all of them when all)
// to the writer and applies it: data and checkpoints land in one Pebble
// batch. With nothing moved and nothing written it does nothing.
func (s *replaySink) apply(all bool) error {
	var moved []*replayLog
	for _, l := range s.logs {
		if all || l.moved {
			moved = append(moved, l)
			l.moved = false
		}
	}
	if len(moved) == 0 && !all && s.w.Len() == 0 {
		return nil
	}
	if err := s.checkpoints(s.w, moved); err != nil {
		return err
	}
	if err := s.w.Apply(); err != nil {
		return fmt.Errorf("%s: applying: %w", s.name, err)
	}
	return nil
}

// finish applies every sink with the checkpoints of all its logs: the
// caller has set what the final checkpoints say.
func (rp *replay) finish() error {
	for _, s := range rp.sinks {
		if err := s.apply(true); err != nil {
			return err
		}
	}
	return nil
}

// close closes the consumer and discards what the sinks did not apply. It
// is safe to call more than once.
func (rp *replay) close() {
	if rp.cl != nil {
		rp.cl.Close()
		rp.cl = nil
	}
	for _, s := range rp.sinks {
		s.w.Discard()
	}
}

// shortOfTargets lists the positions of the logs not done, for errors.
func (rp *replay) shortOfTargets() string {
	var b strings.Builder
	for topic, ps := range rp.logs {
		for p, l := range ps {
			if l.done {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s/%d at %d of %d", topic, p, l.next, l.target)
		}
	}
	return b.String()
}
