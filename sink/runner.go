package sink

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/internal/kgox"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
	// Stale counts fetched records dropped because they lay below the
	// partition's stored offset or belonged to a partition the runner no
	// longer owned (a defensive check; it should stay 0).
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
// not exist, the brokers do not answer at startup, or a batch could not be
// written in WriteAttempts tries (nothing of that batch is committed
// anywhere; a restart resumes from the sink's offsets). A fenced write is not
// an error: the runner rejoins the group and goes on. Run may be called once.
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
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.brokers...)}, r.cfg.kgoOpts...)...)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tds, err := kadm.NewClient(cl).ListTopics(tctx, r.cfg.topics...)
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

	mu struct {
		sync.Mutex
		// pos holds, for each partition owned and set up by
		// AdjustFetchOffsetsFn, the offset the sink stores for it
		// (NoOffset: none).
		pos map[topicPartition]int64
		// hurry cancels the poll in progress; set while polling.
		hurry context.CancelFunc
	}
	// hurried is set when a rebalance waits for the running batch.
	hurried atomic.Bool
}

func (r *Runner) session(ctx context.Context) (err error) {
	s := &session{r: r}
	s.mu.pos = map[topicPartition]int64{}
	c := &r.cfg
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
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
	}
	if c.instanceID != "" {
		opts = append(opts, kgo.InstanceID(c.instanceID))
	}
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
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.cfg.brokers...)}, r.cfg.kgoOpts...)...)
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
// offsets with the ones the sink stored. It may run while a batch of other
// partitions is being gathered or written.
func (s *session) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	c := &s.r.cfg
	set := map[topicPartition]int64{}
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
		for _, p := range ps {
			o, ok := stored[p]
			switch {
			case !ok:
				parts[p] = c.startOffset
				set[topicPartition{topic, p}] = NoOffset
			case o < 0:
				return nil, fmt.Errorf("sink: the sink stores offset %d for %s/%d", o, topic, p)
			default:
				parts[p] = kgo.NewOffset().At(o).WithEpoch(-1)
				set[topicPartition{topic, p}] = o
			}
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

func (s *session) position(tp topicPartition) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.mu.pos[tp]
	return o, ok
}

// cycle gathers one batch and writes it. Rebalances are blocked from the
// first non-empty poll until the batch is written (or dropped): the
// deferred AllowRebalance is what lets revoke callbacks run.
func (s *session) cycle(ctx context.Context) error {
	defer s.cl.AllowRebalance()
	c := &s.r.cfg
	s.hurried.Store(false)

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
			return errors.New("sink: client closed")
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			c.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		})
		fetches.EachRecord(func(kr *kgo.Record) {
			tp := topicPartition{kr.Topic, kr.Partition}
			rg := ranges[tp]
			if rg == nil {
				pos, ok := s.position(tp)
				if !ok || (pos != NoOffset && kr.Offset < pos) {
					s.r.metrics.stale.Add(1)
					return
				}
				rg = &Range{Topic: kr.Topic, Partition: kr.Partition, From: pos}
				ranges[tp] = rg
			} else if kr.Offset < rg.To {
				s.r.metrics.stale.Add(1)
				return
			}
			rg.To = kr.Offset + 1
			b.Records = append(b.Records, toRecord(kr))
		})
		if ctx.Err() != nil || s.hurried.Load() || !time.Now().Before(deadline) {
			break
		}
	}
	if len(b.Records) == 0 {
		return nil
	}
	for _, rg := range ranges {
		b.Ranges = append(b.Ranges, *rg)
	}
	slices.SortFunc(b.Ranges, func(x, y Range) int {
		return cmp.Or(strings.Compare(x.Topic, y.Topic), cmp.Compare(x.Partition, y.Partition))
	})

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
		s.mu.pos[topicPartition{rg.Topic, rg.Partition}] = rg.To
	}
	s.mu.Unlock()
	if c.commitToKafka {
		s.commitToKafka(b.Ranges)
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

func fmtPositions(m map[topicPartition]int64) string {
	tps := make([]topicPartition, 0, len(m))
	for tp := range m {
		tps = append(tps, tp)
	}
	slices.SortFunc(tps, func(x, y topicPartition) int {
		return cmp.Or(strings.Compare(x.topic, y.topic), cmp.Compare(x.partition, y.partition))
	})
	parts := make([]string, len(tps))
	for i, tp := range tps {
		o := fmt.Sprint(m[tp])
		if m[tp] == NoOffset {
			o = "start"
		}
		parts[i] = fmt.Sprintf("%s/%d@%s", tp.topic, tp.partition, o)
	}
	return strings.Join(parts, " ")
}
