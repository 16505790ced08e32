package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/kgox"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// Global tables (stream.SourceGlobalTable): every instance keeps a full copy
// of the table's topic, all partitions, in its Pebble DB, for lookups from
// any task.
//
// The copy lives under the reserved store name "global:<name>" (see
// state.GlobalStore): the data of every partition in one key range
// (partition -1), so a lookup is one Pebble read, and one checkpoint per
// source partition holding the next offset of that partition. The topic
// itself is the changelog: there is no other.
//
// Lifecycle, in Run:
//  1. prepareTopics checks that the topic exists (ErrConfig otherwise) and
//     notes its partition count and topic id.
//  2. bootstrap, before any stage starts (as Kafka Streams blocks startup
//     until its global stores are caught up): per partition, the checkpoint
//     decides (checkpoint.Plan, as for a task) whether the copy resumes from
//     it or is wiped and read again from the topic's start. A direct
//     consumer (no group), read_committed, reads every partition up to its
//     last stable offset as listed when the bootstrap began (the high
//     watermark when no transaction is open on the topic), applying the
//     records with the checkpoints of the offsets reached in one Pebble
//     batch every few MiB.
//  3. follow, in a background goroutine until Run ends: the same consumer
//     goes on reading; each poll is applied with the new checkpoints in one
//     Pebble batch. A failure to apply stops the processor, and so do
//     records deleted before the copy read them (the consumer never resets
//     its position; the next start rebuilds).
//
// A checkpoint's Written is the time the copy was last seen caught up with
// the partition's high watermark (globalTable.since), so that
// checkpoint.Plan's tombstone-age rule never trusts a lagging copy's
// checkpoint longer than the records after it allow.
//
// # Consistency
//
// Stages read the copy as it is when they process a record; nothing ties a
// stage's transaction to the copy's progress. Exactly-once covers a stage's
// own state and outputs: a record processed again after a crash may be
// joined with a newer value than the first time, and instances see a change
// of the table at different moments. Kafka Streams' global tables behave
// the same way.

// globalRefreshInterval is how often a following global table that has
// seen no records lists the topic's offsets: to write fresh checkpoints
// when it is caught up (so that an idle table's checkpoint does not age
// past delete.retention.ms and force a full read on restart), and to start
// reading partitions added to the topic.
var globalRefreshInterval = time.Minute

// globalTable is an instance's copy of one global table.
type globalTable struct {
	p     *Processor
	name  string // the table's name; its Pebble store is state.GlobalStore(name)
	store string
	topic string
	log   *slog.Logger

	// Set by prepareTopics.
	topicID [16]byte

	// Set by bootstrap, before the stages start; read-only afterwards.
	db     *state.DB
	reader *state.GlobalReader

	// Owned by bootstrap, then by the follow goroutine.
	cl   *kgo.Client
	next map[int32]int64 // next offset to apply, per partition
	// since is, per partition, the Written of the partition's next
	// checkpoint: a time before which no record at or past next was
	// written (checkpoint.Checkpoint.Written). It is the time of the
	// checkpoint the copy resumed from, or the moment its rebuild began,
	// until the copy is seen caught up with the partition's high
	// watermark (then the time before that listing). Not the time of the
	// write: a lagging copy's checkpoint would look younger than the
	// records after it, and the tombstone-age rule would trust it too
	// long.
	since           map[int32]time.Time
	deleteRetention time.Duration

	metrics globalMetrics
}

type globalMetrics struct {
	restored       atomic.Int64
	updates        atomic.Int64
	rebuilds       atomic.Int64
	bootstrapNanos atomic.Int64
}

func newGlobals(p *Processor, t *stream.Topology) []*globalTable {
	var gs []*globalTable
	for _, spec := range topology.Of(t).Globals {
		gs = append(gs, &globalTable{
			p:     p,
			name:  spec.Name,
			store: state.GlobalStore(spec.Name),
			topic: spec.Topic,
			log:   p.cfg.logger.With("global", spec.Name),
		})
	}
	return gs
}

// global returns the global table named name, or nil.
func (p *Processor) global(name string) *globalTable {
	for _, g := range p.globals {
		if g.name == name {
			return g
		}
	}
	return nil
}

// Global implements exec.GlobalTask for the stage's Scope: the instance's
// copy of global table name, read-only and safe for concurrent use. The
// copy is complete up to the bootstrap's offsets before any task exists.
func (t *task) Global(name string) exec.ReadStore {
	if g := t.st.p.global(name); g != nil && g.reader != nil {
		return g.reader
	}
	return nil
}

// checkGlobalTopics returns an error for every global table whose topic does
// not exist, and notes the topic ids of the others.
func (p *Processor) checkGlobalTopics(md kadm.Metadata) []error {
	var errs []error
	for _, g := range p.globals {
		d, ok := md.Topics[g.topic]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) || len(d.Partitions) == 0 {
			errs = append(errs, fmt.Errorf("topic %s of global table %s does not exist: create it first (for example: kafka-topics.sh --create --topic %s --partitions N --config cleanup.policy=compact)",
				g.topic, g.name, g.topic))
			continue
		}
		g.topicID = d.ID
	}
	return errs
}

// bootstrapGlobals brings every global table's copy up to date (see
// bootstrap). It returns the first error; the tables bootstrapped before it
// keep their clients, which stopGlobals closes.
func (p *Processor) bootstrapGlobals(ctx context.Context, adm *kadm.Client, db *state.DB) error {
	for _, g := range p.globals {
		start := time.Now()
		var err error
		for attempt := 1; ; attempt++ {
			err = g.bootstrap(ctx, adm, db)
			var moved *logMovedError
			if err == nil || !errors.As(err, &moved) || attempt == restoreAttempts {
				break
			}
			// Records the bootstrap had not read were deleted: start
			// again, and checkpoint.Plan rebuilds from the new log
			// start.
			g.log.Warn("records were deleted from the global table's topic during the bootstrap: starting it again", "err", err)
			if g.cl != nil {
				g.cl.Close()
				g.cl = nil
			}
		}
		g.metrics.bootstrapNanos.Add(int64(time.Since(start)))
		if err != nil {
			return fmt.Errorf("global table %s (topic %s): %w", g.name, g.topic, err)
		}
		g.log.Info("global table ready", "topic", g.topic, "partitions", len(g.next), "restored", g.metrics.restored.Load(), "took", time.Since(start))
	}
	return nil
}

// followGlobals starts following every bootstrapped global table in the
// background until ctx is done. A table that fails calls stop, which ends
// the processor. The returned function waits for the followers, closes
// their clients, and returns the first failure.
func (p *Processor) followGlobals(ctx context.Context, stop func()) (wait func() error) {
	var wg sync.WaitGroup
	errs := make([]error, len(p.globals))
	for i, g := range p.globals {
		if g.cl == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.follow(ctx); err != nil {
				errs[i] = fmt.Errorf("global table %s (topic %s): %w", g.name, g.topic, err)
				stop()
			}
		}()
	}
	return func() error {
		wg.Wait()
		p.closeGlobals()
		return errors.Join(errs...)
	}
}

// closeGlobals closes the global tables' consumers.
func (p *Processor) closeGlobals() {
	for _, g := range p.globals {
		if g.cl != nil {
			g.cl.Close()
			g.cl = nil
		}
	}
}

// bootstrap reads the topic up to its last stable offsets into the copy.
func (g *globalTable) bootstrap(ctx context.Context, adm *kadm.Client, db *state.DB) error {
	g.db = db
	// now is the checkpoints' write time: taken before the offsets are
	// listed, so the records at or after the offsets the bootstrap reaches
	// were appended after it (see refresh), but for those of a
	// transaction open at that moment, which are at most a transaction
	// timeout older: minutes against delete.retention.ms's day.
	now := g.p.now()
	g.deleteRetention = g.topicDeleteRetention(ctx, adm)
	if g.deleteRetention == 0 {
		g.log.Warn("delete.retention.ms of the global table's topic is 0 or cannot be read: its checkpoints are not trusted, the copy is read again from the topic's start unless caught up", "topic", g.topic)
	}
	starts, err := adm.ListStartOffsets(ctx, g.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fmt.Errorf("listing start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, g.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	stable, err := adm.ListCommittedOffsets(ctx, g.topic)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		return fmt.Errorf("listing last stable offsets: %w", err)
	}

	type part struct {
		cp       checkpoint.Checkpoint
		found    bool
		start    int64
		hw       int64
		target   int64
		decision checkpoint.Decision
	}
	parts := map[int32]*part{}
	anyFound := false
	for _, o := range ends[g.topic] {
		pt := &part{hw: o.Offset, target: o.Offset}
		if s, ok := starts.Lookup(g.topic, o.Partition); ok {
			pt.start = s.Offset
		}
		if l, ok := stable.Lookup(g.topic, o.Partition); ok && l.Offset < pt.target {
			pt.target = l.Offset
		}
		cp, found, err := db.Checkpoint(state.GlobalCheckpoint(g.name, o.Partition))
		if errors.Is(err, checkpoint.ErrCorrupt) {
			g.log.Warn("corrupt checkpoint: reading the global table again from the topic's start", "partition", o.Partition, "err", err)
			cp, found, err = checkpoint.Checkpoint{}, true, nil // found: forces a rebuild below
		}
		if err != nil {
			return fmt.Errorf("reading checkpoint of partition %d: %w", o.Partition, err)
		}
		pt.cp, pt.found = cp, found
		anyFound = anyFound || found
		parts[o.Partition] = pt
	}
	if len(parts) == 0 {
		return fmt.Errorf("topic has no partitions")
	}

	rebuild, reason := !anyFound, "no local copy"
	for p, pt := range parts {
		if !pt.found {
			// A partition without a checkpoint next to partitions with
			// one was added to the topic since: read it from its start.
			pt.decision = checkpoint.Decision{From: pt.start}
			continue
		}
		pt.decision = checkpoint.Plan(pt.cp, true, g.store, checkpoint.LogState{
			TopicID:         g.topicID,
			LogStart:        pt.start,
			HighWatermark:   pt.hw,
			DeleteRetention: g.deleteRetention,
		}, now)
		if pt.decision.Rebuild && !rebuild {
			rebuild, reason = true, fmt.Sprintf("partition %d: %s", p, pt.decision.Reason)
		}
	}
	if rebuild {
		// The partitions share one key range: a rebuild is of all of them.
		g.log.Info("reading the global table from the topic's start", "reason", reason)
		g.metrics.rebuilds.Add(1)
		if err := db.WipeGlobal(g.name); err != nil {
			return err
		}
	}

	g.next = map[int32]int64{}
	g.since = map[int32]time.Time{}
	consume := map[int32]kgo.Offset{}
	for p, pt := range parts {
		from := pt.decision.From
		g.since[p] = pt.cp.Written
		if rebuild || !pt.found || now.Before(pt.cp.Written) {
			// Read from the start (a rebuild, or a partition added
			// since): records it meets were written before now but
			// are read as they are now (see checkpoint.Checkpoint.Written).
			g.since[p] = now
		}
		if rebuild {
			from = pt.start
		}
		g.next[p] = from
		consume[p] = kgo.NewOffset().At(from)
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{
		kgo.SeedBrokers(g.p.cfg.brokers...),
		kgo.DialTimeout(g.p.cfg.dialTimeout),
		kgo.WithLogger(kgox.Logger(g.log)),
	}, g.p.cfg.kgoOpts...),
		// After the user's options: the copy's correctness rests on them.
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{g.topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit and abort markers tell the position: the last offset
		// before the end is often a marker.
		kgo.KeepControlRecords(),
		// Never a silent jump past records the copy has not read
		// (deleted by retention or DeleteRecords, possibly with
		// tombstones of keys the copy holds): out of range is an
		// error, and the copy is rebuilt (bootstrap) or the processor
		// stops (follow).
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)...)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	g.cl = cl
	g.reader = db.Global(g.name)

	w := db.NewWriter()
	defer w.Discard()
	behind := func() bool {
		for p, pt := range parts {
			if g.next[p] < pt.target {
				return true
			}
		}
		return false
	}
	for behind() {
		// Bounded like a restore's replay (restoreStall): every record
		// below the targets is committed, so a poll that gets nothing
		// for that long is stuck, and Run must not hang at start.
		pctx, cancel := context.WithTimeout(ctx, restoreStall)
		fetches := cl.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bootstrap interrupted: %w", err)
		}
		var ferr error
		stalled := false
		fetches.EachError(func(topic string, p int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded):
				stalled = true
			case errors.Is(err, kerr.OffsetOutOfRange):
				ferr = errors.Join(ferr, &logMovedError{topic: topic, partition: p, offset: g.next[p], err: err})
			default:
				ferr = errors.Join(ferr, fmt.Errorf("reading %s/%d: %w", topic, p, err))
			}
		})
		if ferr != nil {
			return ferr
		}
		if stalled && fetches.NumRecords() == 0 {
			return fmt.Errorf("bootstrap received no record for %v while behind the topic's end", restoreStall)
		}
		n, err := g.applyFetches(fetches, w, restoreFlushBytes)
		if err != nil {
			return err
		}
		g.metrics.restored.Add(n)
	}
	// Every partition's checkpoint, read or not: a partition that had
	// nothing to read still gets one, so a restart resumes. A partition
	// read up to its high watermark has only records written after now
	// past it; one whose target was a last stable offset held back by an
	// open transaction keeps its earlier time.
	for p, pt := range parts {
		if g.next[p] >= pt.hw {
			g.since[p] = now
		}
	}
	return g.checkpoint(w, nil)
}

// applyFetches applies the fetched records to w, flushing (with
// checkpoints) whenever w holds more than flushBytes, and returns the number
// of data records applied. The caller applies w at the end with
// checkpoint.
func (g *globalTable) applyFetches(fetches kgo.Fetches, w *state.Writer, flushBytes int) (int64, error) {
	var n int64
	touched := map[int32]bool{}
	for it := fetches.RecordIter(); !it.Done(); {
		r := it.Next()
		if r.Topic != g.topic || r.Offset < g.next[r.Partition] {
			continue
		}
		g.next[r.Partition] = r.Offset + 1
		touched[r.Partition] = true
		if r.Attrs.IsControl() {
			continue
		}
		var err error
		if r.Value == nil {
			err = w.Delete(g.store, state.GlobalPartition, r.Key)
		} else {
			err = w.Put(g.store, state.GlobalPartition, r.Key, r.Value)
		}
		if err != nil {
			return n, err
		}
		n++
		if w.Len() > flushBytes {
			if err := g.checkpoint(w, touched); err != nil {
				return n, err
			}
			clear(touched)
		}
	}
	if len(touched) > 0 {
		return n, g.checkpoint(w, touched)
	}
	return n, nil
}

// checkpoint adds the checkpoints of the given partitions (all when nil),
// at their next offsets with their since times as Written, to w, and
// applies w: data and checkpoints land in one Pebble batch.
func (g *globalTable) checkpoint(w *state.Writer, parts map[int32]bool) error {
	for p, next := range g.next {
		if parts != nil && !parts[p] {
			continue
		}
		cp := checkpoint.Checkpoint{
			Stores:  map[string]checkpoint.Store{g.store: {TopicID: g.topicID, Next: next}},
			Written: g.since[p],
		}
		if err := w.SetCheckpoint(state.GlobalCheckpoint(g.name, p), cp); err != nil {
			return err
		}
	}
	if err := w.Apply(); err != nil {
		return fmt.Errorf("applying to the local copy: %w", err)
	}
	return nil
}

// follow applies what the topic receives after the bootstrap, until ctx is
// done. It returns an error when the copy cannot be written, and when
// records it had not read yet were deleted (offset out of range): the copy
// cannot be made whole without a rebuild, which the next start does.
func (g *globalTable) follow(ctx context.Context) error {
	w := g.db.NewWriter()
	defer w.Discard()
	adm := kadm.NewClient(g.cl)
	lastRefresh := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, globalRefreshInterval)
		fetches := g.cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		var lost error
		fetches.EachError(func(topic string, p int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
			case errors.Is(err, kerr.OffsetOutOfRange):
				// Records the copy had not read were deleted. Rebuilding
				// in place would show lookups a half-read copy: stop,
				// as Kafka Streams' global thread does; the next start
				// sees the checkpoint below the log start and rebuilds.
				lost = fmt.Errorf("records of %s/%d that the copy had not read (from offset %d) were deleted: start the processor again, which reads the global table again from the topic's start: %w",
					topic, p, g.next[p], err)
			default:
				g.log.Warn("fetch error while following the global table", "topic", topic, "partition", p, "err", err)
			}
		})
		if lost != nil {
			return lost
		}
		n, err := g.applyFetches(fetches, w, restoreFlushBytes)
		g.metrics.updates.Add(n)
		if err != nil {
			return err
		}
		if time.Since(lastRefresh) >= globalRefreshInterval {
			lastRefresh = time.Now()
			if err := g.refresh(ctx, adm, w); err != nil {
				return err
			}
		}
	}
}

// refresh lists the topic's end offsets. Partitions the copy has caught up
// with get a checkpoint with Written = now (taken before the listing): every
// record at or after its offset is appended after this moment, so
// compaction keeps any tombstone among them for delete.retention.ms from
// now. A lagging partition keeps its older time. Partitions added to the
// topic are read from their start. A failure to list is logged and retried at the
// next refresh.
func (g *globalTable) refresh(ctx context.Context, adm *kadm.Client, w *state.Writer) error {
	now := g.p.now()
	ends, err := adm.ListEndOffsets(ctx, g.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("listing the global topic's end offsets", "err", err)
		}
		return nil
	}
	caughtUp := map[int32]bool{}
	added := map[int32]kgo.Offset{}
	for _, o := range ends[g.topic] {
		next, ok := g.next[o.Partition]
		switch {
		case !ok:
			start := int64(0)
			if starts, err := adm.ListStartOffsets(ctx, g.topic); err == nil {
				if s, ok := starts.Lookup(g.topic, o.Partition); ok && s.Err == nil {
					start = s.Offset
				}
			}
			g.next[o.Partition] = start
			added[o.Partition] = kgo.NewOffset().At(start)
			caughtUp[o.Partition] = true // checkpoint it at its start
		case next >= o.Offset:
			caughtUp[o.Partition] = true
		}
	}
	for p := range caughtUp {
		g.since[p] = now
	}
	if len(added) > 0 {
		g.log.Info("reading partitions added to the global topic", "partitions", len(added))
		g.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{g.topic: added})
	}
	if len(caughtUp) == 0 {
		return nil
	}
	return g.checkpoint(w, caughtUp)
}

// topicDeleteRetention returns how long compaction keeps the topic's
// tombstones, as checkpoint.LogState.DeleteRetention (tombstoneRetention):
// 0 when the settings cannot be read, so that checkpoint.Plan does not trust
// a checkpoint's age (fail closed; the caller logs it).
func (g *globalTable) topicDeleteRetention(ctx context.Context, adm *kadm.Client) time.Duration {
	cfgs, err := adm.DescribeTopicConfigs(ctx, g.topic)
	var rc kadm.ResourceConfig
	if err == nil {
		rc, err = cfgs.On(g.topic, nil)
	}
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		g.log.Warn("reading the global table's topic settings", "topic", g.topic, "err", err)
		return 0
	}
	return tombstoneRetention(rc.Configs)
}

// GlobalMetrics counts what one global table's copy did since Run began.
type GlobalMetrics struct {
	// Restored is the number of records read from the topic into the copy
	// during the bootstrap, before the stages started: the whole topic
	// after a rebuild, the tail after the checkpoints otherwise.
	Restored int64
	// Updates is the number of records applied while following the topic,
	// after the bootstrap.
	Updates int64
	// Rebuilds counts bootstraps that wiped the copy and read the topic
	// from its start (including the first start on a new state directory).
	Rebuilds int64
	// BootstrapTime is the wall time the bootstrap took.
	BootstrapTime time.Duration
}

// globalMetricsSnapshot returns the metrics of every global table, by name.
func (p *Processor) globalMetricsSnapshot() map[string]GlobalMetrics {
	m := make(map[string]GlobalMetrics, len(p.globals))
	for _, g := range p.globals {
		m[g.name] = GlobalMetrics{
			Restored:      g.metrics.restored.Load(),
			Updates:       g.metrics.updates.Load(),
			Rebuilds:      g.metrics.rebuilds.Load(),
			BootstrapTime: time.Duration(g.metrics.bootstrapNanos.Load()),
		}
	}
	return m
}
