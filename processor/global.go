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

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/exec"
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
//     until its global stores are caught up): a changelog replay
//     (replay.go), as a task's restore is. It reads the topic's id and
//     delete.retention.ms again (a principal refused DescribeConfigs on the
//     topic fails Run with ErrConfig: without the setting no checkpoint
//     could be trusted, and every start would read the whole topic); per
//     partition, the checkpoint decides
//     (checkpoint.Plan, as for a task) whether the copy resumes from it or
//     is wiped and read again from the topic's start. A direct consumer
//     (no group), read_committed, reads every partition up to its last
//     stable offset as listed when the bootstrap began (the high watermark
//     when no transaction is open on the topic), applying each poll's
//     records (and every few MiB within one) with the checkpoints of the
//     offsets reached in one Pebble batch.
//  3. follow, in a background goroutine until Run ends: the replay's
//     consumer goes on reading; each poll is applied with the new
//     checkpoints in one Pebble batch. A failure to apply stops the processor, and so do
//     records deleted before the copy read them (the consumer never resets
//     its position; the next start rebuilds) and a Read ACL on the topic
//     taken away.
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

	// Set by prepareTopics, and again by bootstrap.
	topicID [16]byte

	// Set by bootstrap, before the stages start; read-only afterwards.
	db     *state.DB
	reader *state.GlobalReader

	// Owned by bootstrap, then by the follow goroutine.
	//
	// rp is the copy's replay, which follows: its consumer reads on after
	// the bootstrap, and its logs hold the next offset to apply per
	// partition.
	rp *replay
	// since is, per partition, the Written of the partition's next
	// checkpoint: a time before which no record at or past its next offset
	// was written (checkpoint.Checkpoint.Written). It is the time of the
	// checkpoint the copy resumed from, or the moment its rebuild began,
	// until the copy is seen caught up with the partition's high
	// watermark (then the time before that listing). Not the time of the
	// write: a lagging copy's checkpoint would look younger than the
	// records after it, and the tombstone-age rule would trust it too
	// long.
	since map[int32]time.Time

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
			g.close()
		}
		g.metrics.bootstrapNanos.Add(int64(time.Since(start)))
		if err != nil {
			return fmt.Errorf("global table %s (topic %s): %w", g.name, g.topic, err)
		}
		g.log.Info("global table ready", "topic", g.topic, "partitions", len(g.rp.logs[g.topic]), "restored", g.metrics.restored.Load(), "took", time.Since(start))
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
		if g.rp == nil {
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
		g.close()
	}
}

// close closes the copy's consumer, if any.
func (g *globalTable) close() {
	if g.rp != nil {
		g.rp.close()
		g.rp = nil
	}
}

// bootstrap reads the topic up to its last stable offsets into the copy: a
// replay (replay.go) that follows, with one sink (the copy) and a log per
// partition of the topic.
func (g *globalTable) bootstrap(ctx context.Context, adm *kadm.Client, db *state.DB) error {
	g.db = db
	// now is the checkpoints' write time: taken before the offsets are
	// listed, so the records at or after the offsets the bootstrap reaches
	// were appended after it (see refresh), but for those of a
	// transaction open at that moment, which are at most a transaction
	// timeout older: minutes against delete.retention.ms's day.
	now := g.p.now()
	logs, err := describeChangelogs(ctx, adm, g.log, []string{g.topic}, map[string][16]byte{g.topic: g.topicID})
	if err != nil {
		return err
	}
	li := logs[g.topic]
	g.topicID = li.id
	if err := li.configErr; errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		// Refused now, refused at every start: without
		// delete.retention.ms no checkpoint of the copy can be trusted,
		// and every start would read the whole topic again.
		return fmt.Errorf("%w: reading the settings of topic %s: %w: grant the application's principal DescribeConfigs on topic %s (docs/security.md, Global tables): without the topic's delete.retention.ms the local copy's checkpoints cannot be trusted, and every start would read the whole topic again",
			ErrConfig, g.topic, err, g.topic)
	}
	if li.deleteRetention == 0 {
		g.log.Warn("delete.retention.ms of the global table's topic is 0 or cannot be read: its checkpoints are not trusted, the copy is read again from the topic's start unless caught up", "topic", g.topic)
	}
	ends, err := listLogEnds(ctx, adm, g.topic)
	if err != nil {
		return err
	}
	parts, err := g.plan(ends[g.topic], li, now)
	if err != nil {
		return err
	}

	g.rp = &replay{cfg: &g.p.cfg, log: g.log, what: "bootstrap", noun: "record", follow: true}
	g.reader = db.Global(g.name)
	g.since = map[int32]time.Time{}
	sink := g.rp.addSink("the local copy", state.GlobalPartition, db.NewWriter(), g.checkpoints)
	for p, pt := range parts {
		g.since[p] = pt.since
		g.rp.add(sink, g.topic, p, g.store, pt.from, pt.target)
	}
	n, err := g.rp.run(ctx)
	g.metrics.restored.Add(n)
	if err != nil {
		return err
	}
	// Every partition's checkpoint, read or not: a partition that had
	// nothing to read still gets one, so a restart resumes. A partition
	// read up to its high watermark has only records written after now
	// past it; one whose target was a last stable offset held back by an
	// open transaction keeps its earlier time.
	for p, pt := range parts {
		if g.rp.position(g.topic, p).next >= pt.hw {
			g.since[p] = now
		}
	}
	return g.rp.finish()
}

// globalPart is where the bootstrap reads one partition of the topic.
type globalPart struct {
	from   int64     // the first offset to read
	target int64     // the last stable offset, or the high watermark
	hw     int64     // the high watermark
	since  time.Time // the Written of its progress checkpoints
}

// plan reads the checkpoint of every partition of the topic and decides
// with checkpoint.Plan, as of now, where each is read from. A partition
// without a checkpoint next to partitions with one was added to the topic
// since: it is read from its start. The partitions share one key range, so
// a rebuild is of all of them: a checkpoint Plan refuses, a corrupt one, or
// none at all wipes the copy, and every partition is read from its start.
func (g *globalTable) plan(ends map[int32]logEnds, li logInfo, now time.Time) (map[int32]*globalPart, error) {
	if len(ends) == 0 {
		return nil, fmt.Errorf("topic has no partitions")
	}
	type read struct {
		cp    checkpoint.Checkpoint
		found bool
	}
	cps := map[int32]read{}
	rebuild, reason := true, "no local copy"
	for p := range ends {
		cp, found, err := readCheckpoint(g.db, g.log, state.GlobalCheckpoint(g.name, p))
		if err != nil {
			return nil, err
		}
		cps[p] = read{cp, found}
		rebuild = rebuild && !found
	}
	parts := map[int32]*globalPart{}
	for p, e := range ends {
		pt := &globalPart{from: e.start, target: e.hw, hw: e.hw}
		if e.stable >= 0 && e.stable < pt.target {
			pt.target = e.stable
		}
		parts[p] = pt
		if !cps[p].found {
			continue
		}
		d := planStore(cps[p].cp, true, g.store, li, e, now)
		pt.from = d.From
		if d.Rebuild && !rebuild {
			rebuild, reason = true, fmt.Sprintf("partition %d: %s", p, d.Reason)
		}
	}
	if rebuild {
		g.log.Info("reading the global table from the topic's start", "reason", reason)
		g.metrics.rebuilds.Add(1)
		if err := g.db.WipeGlobal(g.name); err != nil {
			return nil, err
		}
	}
	for p, pt := range parts {
		// Read from the start (a rebuild, or a partition added since):
		// records it meets were written before now but are read as they
		// are now (see checkpoint.Checkpoint.Written).
		pt.since = progressSince(cps[p].cp, cps[p].found && !rebuild, now)
		if rebuild {
			pt.from = ends[p].start
		}
	}
	return parts, nil
}

// checkpoints adds to w the checkpoints of the partitions of logs, at their
// next offsets with their since times as Written: the copy's replaySink
// checkpoints.
func (g *globalTable) checkpoints(w *state.Writer, logs []*replayLog) error {
	for _, l := range logs {
		cp := checkpoint.Checkpoint{
			Stores:  map[string]checkpoint.Store{g.store: {TopicID: g.topicID, Next: l.next}},
			Written: g.since[l.partition],
		}
		if err := w.SetCheckpoint(state.GlobalCheckpoint(g.name, l.partition), cp); err != nil {
			return err
		}
	}
	return nil
}

// follow applies what the topic receives after the bootstrap, until ctx is
// done. It returns an error when the copy cannot be written, and when
// records it had not read yet were deleted (offset out of range): the copy
// cannot be made whole without a rebuild, which the next start does.
func (g *globalTable) follow(ctx context.Context) error {
	cl := g.rp.cl
	adm := kadm.NewClient(cl)
	lastRefresh := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, globalRefreshInterval)
		fetches := cl.PollFetches(pctx)
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
				next := int64(-1)
				if l := g.rp.position(topic, p); l != nil {
					next = l.next
				}
				lost = fmt.Errorf("records of %s/%d that the copy had not read (from offset %d) were deleted: start the processor again, which reads the global table again from the topic's start: %w",
					topic, p, next, err)
			case errors.Is(err, kerr.TopicAuthorizationFailed):
				// The ACL was taken away while running: franz-go
				// would fetch again forever, and the copy would
				// silently stop following.
				lost = fmt.Errorf("following %s/%d: %w: grant the application's principal Read on topic %s (docs/security.md, Global tables)", topic, p, err, topic)
			default:
				g.log.Warn("fetch error while following the global table", "topic", topic, "partition", p, "err", err)
			}
		})
		if lost != nil {
			return lost
		}
		n, err := g.rp.apply(fetches)
		g.metrics.updates.Add(n)
		if err != nil {
			return err
		}
		if time.Since(lastRefresh) >= globalRefreshInterval {
			lastRefresh = time.Now()
			if err := g.refresh(ctx, adm); err != nil {
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
// topic are read from their log start, listed for them; a failure to list
// either is logged and retried at the next refresh.
func (g *globalTable) refresh(ctx context.Context, adm *kadm.Client) error {
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
	sink := g.rp.sinks[0]
	var starts kadm.ListedOffsets
	for _, o := range ends[g.topic] {
		if g.rp.position(g.topic, o.Partition) == nil && starts == nil {
			// A partition added to the topic: read it from its log
			// start, which must be known (not assumed 0: a start
			// past 0 would read out of range).
			if starts, err = adm.ListStartOffsets(ctx, g.topic); err == nil {
				err = starts.Error()
			}
			if err != nil {
				if ctx.Err() == nil {
					g.log.Warn("listing the global topic's start offsets for its added partitions", "err", err)
				}
				return nil
			}
		}
	}
	added := 0
	for _, o := range ends[g.topic] {
		l := g.rp.position(g.topic, o.Partition)
		switch {
		case l == nil:
			s, ok := starts.Lookup(g.topic, o.Partition)
			if !ok {
				continue // listed after the end offsets: next refresh
			}
			l = g.rp.add(sink, g.topic, o.Partition, g.store, s.Offset, s.Offset) // checkpointed at its start
			added++
		case l.next < o.Offset:
			continue // lagging
		}
		g.since[o.Partition] = now
		l.moved = true
	}
	if added > 0 {
		g.log.Info("reading partitions added to the global topic", "partitions", added)
	}
	return sink.apply(false)
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
