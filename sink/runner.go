package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/internal/kgox"
)

// errRestart ends a client session after a fenced write: the runner drops
// the batch, closes the client and joins the group again, reading every
// assigned partition's offset from the sink anew.
var errRestart = errors.New("rejoining the group")

// Runner consumes topics with a consumer group and hands the records to a
// Sink in batches, resuming every partition from the offset the sink stored.
// Create it with New and start it with Run.
type Runner struct {
	cfg     cfg
	sink    Sink
	running atomic.Bool
	metrics struct {
		batches, records, fenced, restarts, retries, stale atomic.Int64
	}
}

// Metrics are a Runner's counters since New.
type Metrics struct {
	// Batches and Records count what Write committed.
	Batches, Records int64
	// Fenced counts writes the sink rejected with ErrFenced; each one made
	// the runner drop its batch and rejoin the group.
	Fenced int64
	// Restarts counts client restarts (rejoins after a fenced write).
	Restarts int64
	// Retries counts Write calls retried after an error other than
	// ErrFenced.
	Retries int64
	// Stale counts fetched records dropped because they belonged to a
	// partition the runner no longer owned, or repeated an offset of the
	// batch (a defensive check; it should stay 0). A record below the
	// partition's stored offset is not dropped silently: the runner rejoins
	// (see StartOffset).
	Stale int64
}

// New checks the options and returns a Runner for s. It does not contact
// Kafka or the sink. Every configuration error wraps ErrConfig.
func New(s Sink, opts ...Opt) (*Runner, error) {
	c := defaultCfg()
	for _, o := range opts {
		o.apply(&c)
	}
	err := c.validate()
	if s == nil {
		err = errors.Join(err, fmt.Errorf("%w: the sink is nil", ErrConfig))
	}
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: c, sink: s}, nil
}

// Run is New followed by Runner.Run.
func Run(ctx context.Context, s Sink, opts ...Opt) error {
	r, err := New(s, opts...)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// Group returns the consumer group, <app>-<name>, under which the sink
// stores the offsets.
func (r *Runner) Group() string { return r.cfg.group() }

// Metrics returns the runner's counters. Safe to call at any time.
func (r *Runner) Metrics() Metrics {
	m := &r.metrics
	return Metrics{
		Batches:  m.batches.Load(),
		Records:  m.records.Load(),
		Fenced:   m.fenced.Load(),
		Restarts: m.restarts.Load(),
		Retries:  m.retries.Load(),
		Stale:    m.stale.Load(),
	}
}

// Run consumes until ctx is done, then writes the batch it has gathered,
// leaves the group and returns nil. It returns an error when a topic does
// not exist, the brokers do not answer at startup or refuse an ACL the
// runner needs (ErrConfig, naming it; at start or as soon as the group or
// a fetch is refused, never retried), a batch could not be
// written in WriteAttempts tries (nothing of that batch is committed
// anywhere; a restart resumes from the sink's offsets), or a partition's
// stored position does not fit its topic (a *PositionError: the topic was
// created again, ErrTopicRecreated, or the offset lies above the high
// watermark, ErrOffsetAboveEnd; see StartOffset). A fenced write is not an
// error: the runner rejoins the group and goes on. Run may be called once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("sink: Run called twice on one Runner")
	}
	if err := r.checkTopics(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	backoff := 100 * time.Millisecond
	for {
		err := r.session(ctx)
		if !errors.Is(err, errRestart) {
			return err
		}
		r.metrics.restarts.Add(1)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// checkTopics fails fast on input topics that do not exist.
func (r *Runner) checkTopics(ctx context.Context) error {
	cl, err := kgo.NewClient(append(r.cfg.clientOpts(), r.cfg.kgoOpts...)...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	tds, err := adm.ListTopics(tctx, r.cfg.topics...)
	if fix, guess := kgox.ConnectFix("sink", err); fix != "" && !guess {
		return fmt.Errorf("%w: connecting to %s: %w: %s", ErrConfig, strings.Join(r.cfg.brokers, ","), err, fix)
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) {
		// The brokers refuse the whole request without saying which
		// topic: ask for each alone.
		var refused []string
		for _, t := range r.cfg.topics {
			if _, terr := adm.ListTopics(tctx, t); errors.Is(terr, kerr.TopicAuthorizationFailed) {
				refused = append(refused, t)
			}
		}
		if len(refused) == 0 {
			refused = r.cfg.topics
		}
		return r.cfg.refused(strings.Join(refused, ", "), err)
	}
	if err != nil {
		return fmt.Errorf("sink: listing the input topics on %s: %w", strings.Join(r.cfg.brokers, ","), err)
	}
	var missing []string
	for _, t := range r.cfg.topics {
		if td, ok := tds[t]; !ok || td.Err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: input topic(s) %s do not exist: create them first", ErrConfig, strings.Join(missing, ", "))
	}
	return nil
}

// refused returns the error of Run for err when it is an authorization the
// brokers refused (retrying cannot fix it; franz-go would retry it
// forever), naming the ACL to grant, and nil for any other error. topic is
// the topic err came with ("" for the group's errors, and then the input
// topics are named).
func (c *cfg) refused(topic string, err error) error {
	if topic == "" {
		topic = strings.Join(c.topics, ", ")
	}
	switch {
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		return fmt.Errorf("%w: consumer group %s: %w: grant the sink's principal Read on the consumer group %q (or on the prefix %q; docs/security.md, Sink runners)",
			ErrConfig, c.group(), err, c.group(), c.app+"-")
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("%w: input topic %s: %w: grant the sink's principal Read on topic %s (docs/security.md, Sink runners)",
			ErrConfig, topic, err, topic)
	}
	return nil
}

type topicPartition struct {
	topic     string
	partition int32
}

// session is one client's lifetime: from joining the group to closing the
// client. Positions do not outlive it: a new session reads them from the
// sink again.
type session struct {
	r  *Runner
	cl *kgo.Client
	// adm describes assigned topics for adjust, on a client of its own:
	// adjust may run before kgo.NewClient has returned cl.
	adm *kadm.Client

	mu struct {
		sync.Mutex
		// pos holds, for each partition owned and set up by
		// AdjustFetchOffsetsFn, what the sink stores for it and what the
		// runner expects to fetch.
		pos map[topicPartition]position
		// fatal is set by adjust when a partition's stored position does
		// not fit the topic (a *PositionError): the cycle returns it.
		fatal error
		// hurry cancels the poll in progress; set while polling.
		hurry context.CancelFunc
	}
	// hurried is set when a rebalance waits for the running batch.
	hurried atomic.Bool
}

func (r *Runner) session(ctx context.Context) (err error) {
	s := &session{r: r}
	s.mu.pos = map[topicPartition]position{}
	c := &r.cfg
	opts := append(c.clientOpts(),
		kgo.WithLogger(kgox.Logger(c.logger)),
		kgo.ConsumerGroup(c.group()),
		kgo.ConsumeTopics(c.topics...),
		kgo.SessionTimeout(c.sessionTimeout),
		kgo.RebalanceTimeout(c.rebalanceTime),
		kgo.HeartbeatInterval(c.heartbeat),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(c.startOffset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(s.adjust),
		kgo.OnPartitionsRevoked(s.revoked),
		kgo.OnPartitionsLost(s.revoked),
		kgo.OnPartitionsCallbackBlocked(s.blocked),
	)
	if c.instanceID != "" {
		opts = append(opts, kgo.InstanceID(c.instanceID))
	}
	admCl, err := kgo.NewClient(slices.Concat(c.clientOpts(), []kgo.Opt{kgo.WithLogger(kgox.Logger(c.logger))}, c.kgoOpts)...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer admCl.Close()
	s.adm = kadm.NewClient(admCl)
	cl, err := kgo.NewClient(append(opts, c.kgoOpts...)...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.cl = cl
	defer func() {
		cl.AllowRebalance()
		cl.Close()
		if ctx.Err() != nil && c.instanceID != "" {
			r.leaveGroup()
		}
	}()
	for {
		if err := s.cycle(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// leaveGroup removes the static member from the group on a clean stop:
// franz-go sends no LeaveGroup for static members, and the partitions
// would otherwise wait for the session timeout.
func (r *Runner) leaveGroup() {
	cl, err := kgo.NewClient(append(r.cfg.clientOpts(), r.cfg.kgoOpts...)...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(r.cfg.group()).InstanceIDs(r.cfg.instanceID).Reason("sluice sink shutting down"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		r.cfg.logger.Warn("leaving group", "group", r.cfg.group(), "err", err)
	}
}

// adjust runs after the group fetched the committed offsets of newly
// assigned partitions and before they are fetched: it replaces those
// offsets with the ones the sink stored, after checking them against the
// topic's id and the partitions' log start and high watermark (see
// cfg.resume). It may run while a batch of other partitions is being
// gathered or written. A position that does not fit the topic is fatal: it
// is kept for the cycle to return from Run, and the assignment fails.
func (s *session) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	c := &s.r.cfg
	set := map[topicPartition]position{}
	for topic, parts := range offsets {
		ps := make([]int32, 0, len(parts))
		for p := range parts {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		stored, err := s.r.sink.Offsets(ctx, c.group(), topic, ps)
		if err != nil {
			c.logger.Warn("reading offsets from the sink failed; the group will retry the assignment", "topic", topic, "partitions", ps, "err", err)
			return nil, fmt.Errorf("sink: reading offsets of %s %v: %w", topic, ps, err)
		}
		lv, err := s.live(ctx, topic, len(stored) > 0)
		if err != nil {
			c.logger.Warn("describing an assigned topic failed; the group will retry the assignment", "topic", topic, "err", err)
			return nil, err
		}
		for _, p := range ps {
			l, known := lv[p]
			if !known {
				return nil, fmt.Errorf("sink: the broker's metadata of %s has no partition %d yet", topic, p)
			}
			st, ok := stored[p]
			at, pos, err := c.resume(topic, p, st, ok, l)
			if err != nil {
				var perr *PositionError
				if errors.As(err, &perr) {
					s.mu.Lock()
					s.mu.fatal = err
					s.mu.Unlock()
					c.logger.Error("a stored offset does not fit the topic; stopping", "group", c.group(), "topic", topic, "partition", p, "err", err)
				}
				return nil, err
			}
			if ok && pos.min < 0 {
				why := "below the log start offset: retention deleted records the sink never got; going on at sink.StartOffset"
				if st.Offset > lv[p].hwm || (!st.TopicID.IsZero() && st.TopicID != lv[p].id) {
					why = "the topic was deleted and created again; starting at its beginning (sink.RestartRecreatedTopics)"
				}
				c.logger.Warn("not resuming at the stored offset: "+why, "group", c.group(), "topic", topic, "partition", p,
					"stored", st.Offset, "stored_topic_id", st.TopicID, "topic_id", lv[p].id, "log_start", lv[p].logStart, "high_watermark", lv[p].hwm)
			}
			parts[p] = at
			set[topicPartition{topic, p}] = pos
		}
	}
	s.mu.Lock()
	for tp, o := range set {
		s.mu.pos[tp] = o
	}
	s.mu.Unlock()
	c.logger.Info("partitions assigned; starting at the sink's offsets", "group", c.group(), "offsets", fmtPositions(set))
	return offsets, nil
}

// live describes topic as the broker sees it now: its id and, if
// withOffsets, each partition's log start offset and high watermark. A
// leader whose high watermark may lag (just elected) answers
// OFFSET_NOT_AVAILABLE (KIP-207) rather than a low one: an error here, and
// the assignment is retried.
func (s *session) live(ctx context.Context, topic string, withOffsets bool) (map[int32]live, error) {
	adm := s.adm
	tds, err := adm.ListTopics(ctx, topic)
	if err == nil {
		err = tds.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("sink: describing topic %s: %w", topic, err)
	}
	td := tds[topic]
	out := map[int32]live{}
	for p := range td.Partitions {
		out[p] = live{id: TopicID(td.ID)}
	}
	if !withOffsets {
		return out, nil
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("sink: listing the start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("sink: listing the end offsets of %s: %w", topic, err)
	}
	for p, l := range out {
		so, ok1 := starts.Lookup(topic, p)
		eo, ok2 := ends.Lookup(topic, p)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("sink: listing the offsets of %s/%d: the broker did not answer for it", topic, p)
		}
		l.logStart, l.hwm = so.Offset, eo.Offset
		out[p] = l
	}
	return out, nil
}

// revoked forgets revoked or lost partitions. With BlockRebalanceOnPoll it
// runs only between cycles (after AllowRebalance), so no batch holds records
// of these partitions: the last batch was written before it ran, and none
// will be written after.
func (s *session) revoked(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for topic, ps := range tps {
		for _, p := range ps {
			delete(s.mu.pos, topicPartition{topic, p})
		}
	}
}

// blocked is called when a rebalance waits for the running cycle: stop
// gathering and write what we have.
func (s *session) blocked(context.Context, *kgo.Client) {
	s.hurried.Store(true)
	s.mu.Lock()
	if s.mu.hurry != nil {
		s.mu.hurry()
	}
	s.mu.Unlock()
}

func (s *session) position(tp topicPartition) (position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.mu.pos[tp]
	return o, ok
}

func (s *session) fatal() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.fatal
}

// cycle gathers one batch and writes it. Rebalances are blocked from the
// first non-empty poll until the batch is written (or dropped): the
// deferred AllowRebalance is what lets revoke callbacks run.
func (s *session) cycle(ctx context.Context) error {
	defer s.cl.AllowRebalance()
	s.hurried.Store(false)
	b, err := s.gatherBatch(ctx)
	if err != nil || len(b.Records) == 0 {
		return err
	}
	return s.writeBatch(ctx, b)
}

// gatherBatch polls until the commit interval passed, the batch holds the
// record cap, a revoke hurries it, or ctx is done, and returns the batch
// with its ranges sorted by topic and partition.
func (s *session) gatherBatch(ctx context.Context) (*Batch, error) {
	c := &s.r.cfg
	b := &Batch{Group: c.group()}
	ranges := map[topicPartition]*Range{}
	deadline := time.Now().Add(c.commitInterval)
	for len(b.Records) < c.maxRecords {
		pctx, cancel := context.WithDeadline(ctx, deadline)
		s.mu.Lock()
		s.mu.hurry = cancel
		s.mu.Unlock()
		fetches := s.cl.PollRecords(pctx, c.maxRecords-len(b.Records))
		s.mu.Lock()
		s.mu.hurry = nil
		s.mu.Unlock()
		cancel()
		if fetches.IsClientClosed() {
			return nil, errors.New("sink: client closed")
		}
		var unknownID map[topicPartition]bool
		var denied error
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			if denied == nil {
				denied = c.refused(topic, err)
			}
			if errors.Is(err, kerr.UnknownTopicID) {
				if unknownID == nil {
					unknownID = map[topicPartition]bool{}
				}
				unknownID[topicPartition{topic, partition}] = true
			}
			c.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		})
		if denied != nil {
			c.logger.Error("the brokers refused an ACL; stopping", "group", c.group(), "err", denied)
			return nil, denied
		}
		if err := s.checkTopicIDs(ctx, unknownID); err != nil {
			return nil, err
		}
		if reset := s.addRecords(fetches, b, ranges); reset != nil {
			pos, _ := s.position(topicPartition{reset.Topic, reset.Partition})
			c.logger.Warn("the client's position went below the sink's offset (out of range: topic recreated, or records lost); dropping the batch and rejoining to check the partition",
				"group", c.group(), "topic", reset.Topic, "partition", reset.Partition, "offset", reset.Offset, "stored", pos.from)
			return nil, errRestart
		}
		if err := s.fatal(); err != nil {
			return nil, err
		}
		if ctx.Err() != nil || s.hurried.Load() || !time.Now().Before(deadline) {
			break
		}
	}
	for _, rg := range ranges {
		b.Ranges = append(b.Ranges, *rg)
	}
	slices.SortFunc(b.Ranges, func(x, y Range) int {
		return cmp.Or(strings.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition))
	})
	return b, nil
}

// addRecords adds the fetched records of partitions the session holds to b,
// extending their ranges, and counts the others as stale. It returns the
// first record below a partition's stored position: one that comes from an
// offset reset (see gatherBatch), after which the batch must be dropped.
func (s *session) addRecords(fetches kgo.Fetches, b *Batch, ranges map[topicPartition]*Range) (reset *kgo.Record) {
	fetches.EachRecord(func(kr *kgo.Record) {
		tp := topicPartition{kr.Topic, kr.Partition}
		rg := ranges[tp]
		if rg == nil {
			pos, ok := s.position(tp)
			if !ok {
				s.r.metrics.stale.Add(1)
				return
			}
			if kr.Offset < pos.min {
				// franz-go fetches from the offset adjust set and
				// drops records below it, so this one comes from
				// a reset: the stored offset went out of range
				// after adjust checked it (the topic was deleted
				// and created again, or the broker lost records).
				if reset == nil {
					reset = kr
				}
				return
			}
			rg = &Range{Topic: kr.Topic, Partition: kr.Partition, From: pos.from, FromTopicID: pos.fromID, TopicID: pos.id}
			ranges[tp] = rg
		} else if kr.Offset < rg.To {
			s.r.metrics.stale.Add(1)
			return
		}
		rg.To = kr.Offset + 1
		b.Records = append(b.Records, toRecord(kr))
	})
	return reset
}

// writeBatch writes b to the sink with its ranges and, once written, moves
// the session's positions past it.
func (s *session) writeBatch(ctx context.Context, b *Batch) error {
	c := &s.r.cfg
	if err := s.write(ctx, b); err != nil {
		if errors.Is(err, ErrFenced) {
			s.r.metrics.fenced.Add(1)
			c.logger.Warn("the sink rejected the batch's offsets (another instance wrote them, or an earlier attempt of this batch committed); dropping the batch and rejoining the group",
				"group", c.group(), "records", len(b.Records), "ranges", fmtRanges(b.Ranges), "err", err)
			return errRestart
		}
		return fmt.Errorf("sink: writing a batch of %d records (%s): %w", len(b.Records), fmtRanges(b.Ranges), err)
	}

	s.r.metrics.batches.Add(1)
	s.r.metrics.records.Add(int64(len(b.Records)))
	s.mu.Lock()
	for _, rg := range b.Ranges {
		// A revoke cannot have run since the poll (rebalances are
		// blocked), so every partition of the batch is still ours.
		s.mu.pos[topicPartition{rg.Topic, rg.Partition}] = position{from: rg.To, fromID: rg.TopicID, id: rg.TopicID, min: rg.To}
	}
	s.mu.Unlock()
	if c.commitToKafka {
		s.commitToKafka(b.Ranges)
	}
	return nil
}

// checkTopicIDs looks at the topics whose fetches failed with
// UNKNOWN_TOPIC_ID: franz-go keeps fetching a deleted topic by its old id,
// even after a topic of the same name was created again. If a topic now has
// another id than the one its partitions were set up with, the session
// ends (errRestart), and the next assignment's adjust decides: fail with
// ErrTopicRecreated, or start over (RestartRecreatedTopics).
func (s *session) checkTopicIDs(ctx context.Context, tps map[topicPartition]bool) error {
	checked := map[string]bool{}
	for tp := range tps {
		pos, ok := s.position(tp)
		if !ok || pos.id.IsZero() || checked[tp.topic] {
			continue
		}
		checked[tp.topic] = true
		lv, err := s.live(ctx, tp.topic, false)
		if err != nil {
			continue // deleted and not (yet) created again; franz-go retries
		}
		if l, ok := lv[tp.partition]; ok && !l.id.IsZero() && l.id != pos.id {
			s.r.cfg.logger.Warn("the topic was deleted and created again while consumed; dropping the batch and rejoining to check its partitions",
				"group", s.r.cfg.group(), "topic", tp.topic, "old_topic_id", pos.id, "topic_id", l.id)
			return errRestart
		}
	}
	return nil
}

// write calls the sink's Write, retrying errors other than ErrFenced.
func (s *session) write(ctx context.Context, b *Batch) error {
	c := &s.r.cfg
	for attempt := 1; ; attempt++ {
		// The batch is written even when ctx is done: it holds what was
		// polled, and shutting down means finishing it.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.writeTimeout)
		err := s.r.sink.Write(wctx, b)
		cancel()
		if err == nil || errors.Is(err, ErrFenced) || attempt >= c.writeAttempts {
			return err
		}
		s.r.metrics.retries.Add(1)
		c.logger.Warn("writing a batch failed; retrying", "attempt", attempt, "of", c.writeAttempts, "err", err)
		time.Sleep(retryPause(attempt))
	}
}

// commitToKafka commits the offsets the sink just stored to the group, for
// monitoring. Asynchronous; a failure is only logged.
func (s *session) commitToKafka(ranges []Range) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for _, rg := range ranges {
		if offsets[rg.Topic] == nil {
			offsets[rg.Topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[rg.Topic][rg.Partition] = kgo.EpochOffset{Epoch: -1, Offset: rg.To}
	}
	log := s.r.cfg.logger
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	s.cl.CommitOffsets(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		cancel()
		if err != nil {
			log.Debug("committing offsets to Kafka for monitoring failed", "err", err)
		}
	})
}

func toRecord(kr *kgo.Record) Record {
	r := Record{
		Topic:     kr.Topic,
		Partition: kr.Partition,
		Offset:    kr.Offset,
		Key:       kr.Key,
		Value:     kr.Value,
		Timestamp: kr.Timestamp,
	}
	if len(kr.Headers) > 0 {
		r.Headers = make([]Header, len(kr.Headers))
		for i, h := range kr.Headers {
			r.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return r
}

func fmtRanges(rs []Range) string {
	parts := make([]string, len(rs))
	for i, rg := range rs {
		from := fmt.Sprint(rg.From)
		if rg.From == NoOffset {
			from = "none"
		}
		parts[i] = fmt.Sprintf("%s/%d %s->%d", rg.Topic, rg.Partition, from, rg.To)
	}
	return strings.Join(parts, " ")
}

func fmtPositions(m map[topicPartition]position) string {
	tps := make([]topicPartition, 0, len(m))
	for tp := range m {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(x, y topicPartition) int {
		return cmp.Or(strings.Compare(x.topic, y.topic), cmp.Compare(x.partition, y.partition))
	})
	parts := make([]string, len(tps))
	for i, tp := range tps {
		o := fmt.Sprint(m[tp].from)
		switch {
		case m[tp].from == NoOffset:
			o = "start"
		case m[tp].min < 0:
			o += "(restarting)"
		}
		parts[i] = fmt.Sprintf("%s/%d@%s", tp.topic, tp.partition, o)
	}
	return strings.Join(parts, " ")
}
