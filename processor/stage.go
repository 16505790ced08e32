package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/balancer"
	"github.com/sluicehq/sluice/internal/exec"
	"github.com/sluicehq/sluice/internal/kgox"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// stage runs one sub-topology: one consumer group, one transactional producer
// per instance, one task per input partition.
type stage struct {
	// pace is what the last gather saw (gatherDeadline). Only the
	// stage's loop touches it.
	pace struct {
		ended    time.Time     // when the last gather stopped
		caughtUp bool          // it waited for records: no backlog
		idle     time.Duration // how long its polls waited for records
		// perRecord is how long the last records took to process,
		// each (fits); overhead is the part of the current handler
		// call paid once per poll (notFromRecords).
		perRecord, overhead time.Duration
	}
	p       *Processor
	name    string
	cfg     stageCfg
	group   string
	txnID   string
	program exec.Program
	punct   *exec.Punctuator // nil: the stage has no timers
	db      *state.DB
	log     *slog.Logger

	inputs      []topicRef
	outputs     []topicRef
	stores      []*storeInfo
	storeByName map[string]*storeInfo
	partitions  int32 // set by prepareTopics

	mu struct {
		sync.Mutex
		tasks map[int32]*task
		// revoked holds the partitions of tasks that were revoked or
		// lost (told by a callback, or seen missing from an assignment
		// by onSync) and not yet dropped by the loop.
		// INVARIANT: a task whose partition this member did not hold
		// without interruption since the task was restored is in
		// revoked (or already dropped): it is never used again.
		revoked map[int32]bool
		// INVARIANT: tasks holds no closed task: every close happens
		// under mu together with the task's removal from tasks.
		// dropped holds the partitions whose tasks the loop dropped
		// after a revoke and that were not assigned again since: kgo
		// may still hand over a few of their buffered records before
		// its own revoke runs.
		dropped map[int32]bool
	}
	// movedStreak counts the cycles aborted in a row for a partition that
	// moved (errPartitionMoved); past maxMovedStreak the stage restarts
	// rather than abort forever (loop only).
	movedStreak int
	// sawRevoke is set by the revoke and lost callbacks and cleared when a
	// transaction ends: franz-go's GroupTransactSession aborts the open
	// transaction (or the next one) after such a callback, on purpose.
	// Its flag lives until the next End, so ours does too.
	sawRevoke atomic.Bool

	// cl is the client of the running exactly-once session (nil between
	// sessions); set right after the client is made, which may be after
	// its first assignment arrived (see resolveStarts).
	cl atomic.Pointer[kgo.Client]
	// inputIDs are the input topics' ids, for the fence (fence.go).
	inputIDs map[string][16]byte
	// unconfirmed is set when franz-go logs that it could not confirm how
	// an EndTxn ended (see watchLogger).
	unconfirmed atomic.Bool
	// ending is what franz-go's last End decided before its EndTxn
	// (endTriedAbort, endTriedCommit; see watchLogger).
	ending atomic.Int32
	// txnBegan is when the open cycle began its transaction (the client's
	// Begin, before the broker's transaction timer starts at the first
	// partition added): the origin of the flush deadline (flushDeadline).
	// Loop only.
	txnBegan time.Time
	// gatherCap caps the records of the next gathers after a flush that
	// timed out (shrinkGathers); 0: no cap. Loop only.
	gatherCap int
	// transient is the running episode of transactions aborted because
	// their flush failed for the broker's circumstances (settleTransient).
	// Loop only.
	transient struct {
		since  time.Time // the episode's first abort
		aborts int       // aborts in the episode; 0: none running
	}
	// endingAt is when the open cycle began to end (before its changelog
	// records were produced and before EndTxn): the time a checkpoint of
	// this cycle carries (checkpoint.Checkpoint.Written). Stamping it
	// later would make a checkpoint look younger than the records it
	// covers, and the tombstone-age rule could trust it too long.
	endingAt time.Time

	// Per cycle, owned by the loop goroutine.
	in         exec.Record // the record handed to the Program now
	scope      exec.Scope
	produceErr atomic.Pointer[error]
	dirty      []*task
	emitted    int64 // records emitted in the open cycle
	onProduced func(*kgo.Record, error)
	// recs is what is left of the chunk that newRecord carves produced
	// records from (loop only).
	recs []kgo.Record

	metrics stageMetrics
	// phase is where the stage is, for the processor's State (set with
	// Processor.setPhase); assignedOnce is set once it had an assignment.
	phase        atomic.Int32
	phaseSince   atomic.Int64 // Unix ns of the last change of phase
	assignedOnce atomic.Bool
	// lag is what the polls saw of the input partitions (tasks.go);
	// restores are the restores in progress.
	lag      atomic.Pointer[lagTable]
	restores restores
	// kprom is where the stage's clients register franz-go's metrics (nil
	// without metrics).
	kprom prometheus.Registerer

	// fetchErrs logs each distinct fetch or group error once (loop only).
	fetchErrs errorLog
	// order is what a stage with several inputs knows of its partitions'
	// positions (order.go; loop only).
	order orderState
}

type topicRef struct {
	name     string
	internal bool
}

type storeInfo struct {
	name            string
	topic           string
	topicID         [16]byte
	deleteRetention time.Duration
}

func newStage(p *Processor, spec *topology.Stage) *stage {
	app := p.cfg.app
	st := &stage{
		p:           p,
		name:        spec.Name,
		cfg:         p.cfg.stageConfig(spec.Name),
		group:       app + "-" + spec.Name,
		txnID:       app + "-" + spec.Name + "-" + p.cfg.instanceID,
		program:     spec.Program(app),
		punct:       spec.Punctuator(app),
		log:         p.cfg.logger.With("stage", spec.Name),
		storeByName: map[string]*storeInfo{},
	}
	for _, in := range spec.Inputs {
		st.inputs = append(st.inputs, topicRef{in.TopicName(app), in.Internal})
	}
	for _, out := range spec.Outputs {
		st.outputs = append(st.outputs, topicRef{out.TopicName(app), out.Internal})
	}
	for _, s := range spec.Stores {
		si := &storeInfo{name: s.Name, topic: topology.ChangelogTopic(app, s.Name)}
		st.stores = append(st.stores, si)
		st.storeByName[s.Name] = si
	}
	st.mu.tasks = map[int32]*task{}
	st.mu.revoked = map[int32]bool{}
	st.mu.dropped = map[int32]bool{}
	st.onProduced = func(r *kgo.Record, err error) {
		if err != nil {
			st.failProduce(fmt.Errorf("producing to %s: %w", r.Topic, err))
		}
	}
	return st
}

func (st *stage) failProduce(err error) {
	st.produceErr.CompareAndSwap(nil, &err)
}

// run runs the stage until ctx is done or it fails. An unknown transaction
// outcome, or a failure of the stage's client, restarts the client and
// rebuilds the tasks from their checkpoints and changelogs, after a backoff
// that grows while restarts follow each other without a commit (fatal.go).
// An error that retrying cannot fix stops the stage with a *FatalError.
func (st *stage) run(ctx context.Context) error {
	var seen errorLog
	streak := 0
	for {
		commits := st.metrics.commits.Load()
		st.p.setPhase(st, phaseRebalancing)
		err := st.session(ctx)
		if ctx.Err() != nil {
			// Shutting down: whatever the last cycle's outcome, the
			// next start restores from the checkpoints.
			if fe := st.fatal(err); fe != nil {
				return fe
			}
			return nil
		}
		if fe := st.fatal(err); fe != nil {
			st.log.Error("stage stopped: retrying cannot fix this", "err", fe.Err, "fix", fe.Fix)
			return fe
		}
		if !errors.Is(err, errUnknownOutcome) {
			return err
		}
		if st.metrics.commits.Load() != commits {
			streak = 0
		}
		streak++
		st.metrics.restarts.Add(1)
		wait := restartBackoff(streak)
		if seen.changed(err) {
			st.log.Warn("restarting stage; rebuilding tasks from checkpoints", "err", err, "backoff", wait)
		} else {
			st.log.Debug("restarting stage again for the same cause", "err", err, "times", seen.count, "backoff", wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (st *stage) clientOpts() []kgo.Opt {
	c := &st.p.cfg
	topics := make([]string, len(st.inputs))
	for i, in := range st.inputs {
		topics[i] = in.name
	}
	opts := append(c.stageBaseOpts(st.log),
		kgo.ConsumerGroup(st.group),
		kgo.ConsumeTopics(topics...),
		kgo.InstanceID(c.instanceID),
		kgo.SessionTimeout(c.sessionTimeout),
		kgo.RebalanceTimeout(c.rebalanceTime),
		kgo.HeartbeatInterval(c.heartbeat),
		kgo.RecordPartitioner(newPartitioner()),
		kgo.ProducerBatchMaxBytes(int32(max(c.maxRecordBytes+1024, 1000012))),
		kgo.OnPartitionsRevoked(st.onRevoked),
		kgo.OnPartitionsLost(st.onRevoked),
		kgo.AdjustFetchOffsetsFn(st.onAssigned),
		kgo.WithHooks(st.kpromHooks()...),
		// A cycle's polls block rebalances until the cycle ended
		// (committed and applied, or aborted): revoke and lost
		// callbacks then run only between cycles, never while a polled
		// batch is processed (kgo gates them on the poll).
		kgo.BlockRebalanceOnPoll(),
	)
	acks, idempotent, retries, linger := st.cfg.producer()
	switch acks {
	case AllAcks:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	case LeaderAck:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	case NoAck:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	}
	if !idempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if retries >= 0 {
		opts = append(opts, kgo.RecordRetries(retries))
	}
	opts = append(opts, kgo.ProducerLinger(linger))
	if st.cfg.guarantee == ExactlyOnce {
		opts = append(opts, kgo.TransactionalID(st.txnID), kgo.TransactionTimeout(c.txnTimeout),
			kgo.RetryTimeoutFn(eosRetryTimeout(c.sessionTimeout, c.txnTimeout)))
	}
	opts = append(opts, c.kgoOpts...)
	// After the user's options: the stage reads only committed input (a
	// read_uncommitted stage would process an aborted transaction's
	// records and commit their effects), and a task without a committed
	// offset starts at its input's start (a repartition topic's records
	// written before the stage's first commit are not skipped).
	opts = append(opts,
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	// After the user's options, so that a logger among them cannot replace
	// the watch for unconfirmed EndTxn outcomes: it wraps that logger.
	inner := st.p.userLogger
	if inner == nil {
		inner = kgox.Logger(st.log)
	}
	opts = append(opts, kgo.WithLogger(watchLogger{inner, &st.unconfirmed, &st.ending}))
	// After the user's options: a stage's unit of work is a task (one
	// partition number across all its inputs), so the group must assign
	// whole tasks, cooperatively; no other balancer may replace it. The
	// balancer also tells the stage every assignment it receives (onSync).
	return append(opts, kgo.Balancers(balancer.NewObserved(st.onSync)))
}

// producer produces records: a GroupTransactSession (inside its open
// transaction) or a plain Client.
type producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// poller polls records: a GroupTransactSession or a plain Client.
type poller interface {
	PollRecords(ctx context.Context, maxPollRecords int) kgo.Fetches
}

// session runs one client's lifetime in the stage's guarantee.
func (st *stage) session(ctx context.Context) error {
	if st.cfg.guarantee == ExactlyOnce {
		return st.sessionEOS(ctx)
	}
	return st.sessionPlain(ctx)
}

// pollChunk caps the records of one poll, so that gather looks at the
// commit interval's deadline at least every pollChunk records even when a
// backlog would fill the whole transaction in one poll (Kafka Streams polls
// at most 1000 records too). Without it a transaction of slow records
// could outlive the transaction timeout.
const pollChunk = 1000

// fits returns how many records one commit interval fits at the pace the
// last records were processed (notePollCost), from 1 to limit; limit when
// the pace is not known yet.
//
// A transaction processes every record it polled, so this bounds it: one
// poll of 1000 records at 10 ms each (a slow user function, a starved
// machine) would hold a transaction open for 10 s, the default transaction
// timeout, and a stage with several inputs, which buffers its whole gather
// and processes it at the end (order.go), would do the same with up to
// MaxRecordsPerTransaction records at far less.
func (st *stage) fits(limit int) int {
	per := st.pace.perRecord
	if per <= 0 {
		return limit
	}
	return int(min(max(st.cfg.commitInterval/per, 1), time.Duration(limit)))
}

// pollLimit returns how many records the next poll may take: pollChunk, or
// fewer when records have been slow to process (fits).
func (st *stage) pollLimit() int { return st.fits(pollChunk) }

// gatherLimit returns how many records a gather may take: the record cap,
// or for a stage with several inputs (whose records are all processed after
// the gather) what an interval fits at the records' pace.
func (st *stage) gatherLimit(ordered bool) int {
	if !ordered {
		return st.cfg.maxRecords
	}
	return st.fits(st.cfg.maxRecords)
}

// notePollCost notes the pace of n records that took took to hand over,
// less what the handler reported as paid once per poll (notFromRecords).
func (st *stage) notePollCost(n int, took time.Duration) {
	took -= st.pace.overhead
	st.pace.overhead = 0
	if n == 0 {
		return
	}
	st.pace.perRecord = took / time.Duration(n)
}

// notFromRecords tells notePollCost that d of the current handler call was
// paid once for the poll, not per record: at-most-once's offset commit
// before processing. Counting it per record would shrink the polls after
// every slow commit until each poll took one record.
func (st *stage) notFromRecords(d time.Duration) { st.pace.overhead += d }

// gather polls until the commit interval passed, the record cap is reached
// or ctx is done, and hands each poll's records to fn. It stops at fn's
// first error and returns it with the number of records handed over.
//
// A stage with several inputs hands all of the cycle's records to fn at the
// end instead, each task's in timestamp order, after waiting up to
// MaxTaskIdle for partitions the broker holds unfetched records for
// (order.go).
func (st *stage) gather(ctx context.Context, pl poller, fn func([]*kgo.Record) error) (int, error) {
	start := time.Now()
	deadline := st.gatherDeadline(start)
	ordered := st.ordered()
	var idle time.Duration // blocked in polls that waited for records
	defer func() {
		st.pace.ended = time.Now()
		st.pace.caughtUp = caughtUp(idle, st.pace.ended.Sub(start))
		st.pace.idle = idle
		st.metrics.idleNanos.Add(int64(idle))
	}()
	var buf []*kgo.Record
	n := 0
	got := 0 // records of the last poll
	poll := func(until time.Time, limit int) error {
		got = 0
		ps := time.Now()
		pctx, cancel := context.WithDeadline(ctx, until)
		fetches := pl.PollRecords(pctx, min(limit, st.pollLimit()))
		cancel()
		if waited := time.Since(ps); waited >= caughtUpIdle {
			idle += waited
		}
		if fetches.IsClientClosed() {
			return fmt.Errorf("stage %s: client closed", st.name)
		}
		var fatal error
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			// Group management errors (a failed join, a failed
			// restore in onAssigned) come here too, wrapped in
			// kgo.ErrGroupSession; franz-go retries those itself.
			if fe := st.fatal(err); fe != nil && fatal == nil {
				fatal = fe
				return
			}
			if fe := st.inputGone(ctx, clientOf(pl), topic, err); fe != nil && fatal == nil {
				fatal = fe
				return
			}
			if st.fetchErrs.changed(err) {
				st.log.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
			}
		})
		if fatal != nil {
			return fatal
		}
		recs := fetches.Records()
		if len(recs) == 0 {
			return nil
		}
		n += len(recs)
		got = len(recs)
		st.noteLag(fetches) // operations hook (tasks.go): per partition of the poll
		if ordered {
			st.noteFetches(fetches)
			buf = append(buf, recs...)
			return nil
		}
		began := time.Now()
		err := fn(recs)
		st.notePollCost(len(recs), time.Since(began))
		return err
	}
	quiet := st.quietAfter(start)
	limit := st.gatherLimit(ordered)
	if c := st.gatherCap; c > 0 && c < limit {
		limit = c // a flush timed out lately (shrinkGathers)
	}
	for n < limit {
		until, early := deadline, st.pace.caughtUp && n > 0
		if early {
			until = minTime(deadline, maxTime(time.Now().Add(quietWait(st.cfg.commitInterval)), quiet))
		}
		if err := poll(until, limit-n); err != nil {
			return n, err
		}
		now := time.Now()
		if ctx.Err() != nil || !now.Before(deadline) {
			break
		}
		if early && got == 0 && !now.Before(quiet) {
			// A burst of input is processed and no more came:
			// end now rather than at the deadline (quietAfter).
			break
		}
	}
	if !ordered || len(buf) == 0 {
		return n, nil
	}
	if idle := st.cfg.maxTaskIdle; idle > 0 && ctx.Err() == nil {
		cl := clientOf(pl)
		waitUntil := time.Now().Add(idle)
		for {
			lag := st.lagging(ctx, cl, buf)
			if len(lag) == 0 {
				break
			}
			if n >= st.cfg.maxRecords || ctx.Err() != nil {
				break // no wait happened: the lag stays known
			}
			if !time.Now().Before(waitUntil) {
				st.log.Debug("task idle wait ended without records of lagging partitions", "partitions", lag)
				st.settle(lag)
				break
			}
			until := time.Now().Add(st.cfg.commitInterval)
			if waitUntil.Before(until) {
				until = waitUntil
			}
			if err := poll(until, max(st.cfg.maxRecords-n, 1)); err != nil {
				return n, err
			}
		}
	}
	began := time.Now()
	err := fn(st.orderByTime(buf))
	st.notePollCost(len(buf), time.Since(began))
	return n, err
}

// caughtUpIdle is how long a poll must have waited for records for the
// wait to count as idle time: a poll that finds records buffered returns in
// microseconds.
const caughtUpIdle = time.Millisecond

// caughtUp reports whether a gather that lasted took and whose polls waited
// idle for records leaves the stage caught up with its input: its polls
// waited at least a tenth of the gather. A stage that waits a few
// milliseconds per gather is nearly saturated, and pacing it as caught up
// (shorter gathers, transactions that end early) would spend more of its
// time ending transactions than it has to spare.
func caughtUp(idle, took time.Duration) bool {
	return idle >= caughtUpIdle && idle >= took/10
}

// quietWait is how long a caught-up stage that has records in its
// transaction polls for more before it calls its input quiet (gather): a
// twentieth of the commit interval, at least 1 ms and at most 20 ms. The
// records of one upstream commit, or of one producer's burst, arrive in
// polls spaced well below it.
func quietWait(interval time.Duration) time.Duration {
	return min(max(interval/20, time.Millisecond), 20*time.Millisecond)
}

// quietAfter returns the earliest time at which a caught-up stage whose
// gather started at start may end its transaction because its input went
// quiet: half a commit interval after the previous gather stopped, and a
// quarter of an interval after start.
//
// A stage fed by another stage's output (a repartition topic read with
// read_committed) sees its input in bursts, one per upstream commit; so
// does a stage fed by an occasional producer. Waiting for the deadline
// after such a burst is processed adds up to a whole interval to the
// latency of every record in it, for no throughput: nothing else is
// coming. The floor bounds the transaction rate at twice the rate of
// interval-paced transactions however many upstream instances commit at
// their own times, and keeps transactions from following each other back
// to back when ending them is slow.
func (st *stage) quietAfter(start time.Time) time.Time {
	iv := st.cfg.commitInterval
	return maxTime(st.pace.ended.Add(iv/2), start.Add(iv/4))
}

// gatherDeadline returns when the cycle starting at now stops gathering
// records and ends its transaction.
//
// A stage that has a backlog (its last gather never waited for records)
// gathers for the whole commit interval from now: it is working through
// records already there, and each transaction's fixed cost (flush, offset
// commit, EndTxn, apply) is spread over as many records as the interval
// allows. A stage that is caught up with live input instead ends its
// transaction one commit interval after the previous one stopped
// gathering, so that the time the previous transaction took to end counts
// toward the interval, as Kafka Streams counts its commit interval from the
// last commit. Otherwise a record that arrives while a transaction ends
// would wait for that end, then a whole interval, then its own end: the
// interval plus twice the ending time instead of the interval plus once.
func (st *stage) gatherDeadline(now time.Time) time.Time {
	if !st.pace.caughtUp || st.pace.ended.IsZero() {
		return now.Add(st.cfg.commitInterval)
	}
	// At least half an interval: when ending takes longer than the
	// interval (an overloaded broker), back-to-back transactions of a few
	// records each would add to the load that slows them.
	return maxTime(st.pace.ended.Add(st.cfg.commitInterval), now.Add(st.cfg.commitInterval/2))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// clientOf returns the client behind a poller.
func clientOf(pl poller) *kgo.Client {
	switch c := pl.(type) {
	case *kgo.GroupTransactSession:
		return c.Client()
	case *kgo.Client:
		return c
	}
	return nil
}

// flush waits, until deadline, for every produced record and returns the
// first produce error.
func (st *stage) flush(cl *kgo.Client, deadline time.Time) error {
	fctx, cancel := context.WithDeadline(context.Background(), deadline)
	err := cl.Flush(fctx)
	cancel()
	if err != nil {
		st.failProduce(fmt.Errorf("flushing: %w", err))
	}
	if perr := st.produceErr.Load(); perr != nil {
		return fmt.Errorf("stage %s: %w", st.name, *perr)
	}
	return nil
}

// process runs the stage's program on one record.
func (st *stage) process(prod producer, r *kgo.Record) error {
	st.metrics.noteInput(r.Timestamp)
	t, revoked := st.taskOf(r.Partition)
	if t == nil && !(revoked && st.cfg.guarantee == ExactlyOnce) {
		// franz-go fetches a partition only after its restore finished
		// and stops before its revoke returns (rebalances wait for the
		// cycle), so this is a bug: abort and rebuild rather than commit
		// an offset without its effects.
		return fmt.Errorf("stage %s: %w: record for partition %d that has no task", st.name, errUnknownOutcome, r.Partition)
	}
	if revoked && st.cfg.guarantee == ExactlyOnce {
		// An assignment without the partition arrived while the batch
		// was in flight (onSync; the revoke callback waits for the
		// cycle). Abort the cycle on purpose: its records come again,
		// to whoever owns them then; nothing restarts. At-least-once
		// and at-most-once process the batch to its end and commit
		// before the revoke (they block rebalances as well).
		return fmt.Errorf("stage %s: %w: record %s/%d@%d", st.name, errPartitionMoved, r.Topic, r.Partition, r.Offset)
	}
	if !t.dirty() {
		st.dirty = append(st.dirty, t)
	}
	t.inputs[r.Topic] = r.Offset + 1

	// One Record per stage, not per record: the Program may not keep it.
	// franz-go never reuses a fetched record's key and value (sluice does
	// not Recycle records), so the Program may keep those without a copy
	// (Owned), except under the DeadLetter policy: a function may modify
	// its codec.Bytes input in place, and the dead-letter record must carry
	// the bytes as they were fetched.
	in := &st.in
	*in = exec.Record{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Key:       r.Key,
		Value:     r.Value,
		Timestamp: r.Timestamp,
		Owned:     st.cfg.policy != DeadLetter,
	}
	if len(r.Headers) > 0 {
		in.Headers = make([]exec.Header, len(r.Headers))
		for i, h := range r.Headers {
			in.Headers[i] = exec.Header{Key: h.Key, Value: h.Value}
		}
	}
	sc := &st.scope
	sc.Begin(t, st.p.cfg.maxRecordBytes)
	err := st.call(sc, in)
	*in = exec.Record{} // keep no fetched memory alive between records
	if err == nil {
		err = sc.Err()
	}
	if err != nil {
		rerr := &RecordError{Stage: st.name, Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Err: err}
		if errors.Is(err, stream.ErrLateRecord) {
			st.metrics.late.Add(1)
		}
		if errors.Is(err, stream.ErrNullKey) {
			st.metrics.nullKeys.Add(1)
		}
		switch st.cfg.policy {
		case Skip:
			st.metrics.skipped.Add(1)
			st.log.Warn("skipping record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			return nil
		case DeadLetter:
			st.metrics.deadLettered.Add(1)
			st.log.Warn("dead-lettering record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "dlq", st.p.cfg.dlq, "err", err)
			prod.Produce(context.Background(), st.deadLetter(r, err), st.onProduced)
			return nil
		}
		st.metrics.failed.Add(1)
		return rerr
	}
	return st.applyEffects(prod, t, sc)
}

// applyEffects applies what a record (or a timer) staged in sc for task t:
// its store writes go to the task's batch and are noted for the changelog,
// its outputs are produced.
func (st *stage) applyEffects(prod producer, t *task, sc *exec.Scope) error {
	for _, w := range sc.Writes() {
		if err := t.write(w.Store, w.Key, w.Value); err != nil {
			return fmt.Errorf("stage %s: writing store %s: %w", st.name, w.Store, err)
		}
	}
	emits := sc.Emits()
	st.emitted += int64(len(emits))
	for i := range emits {
		o := &emits[i]
		kr := st.newRecord()
		kr.Topic, kr.Key, kr.Value, kr.Timestamp = o.Topic, o.Key, o.Value, o.Timestamp
		if o.Partition != exec.AnyPartition {
			kr.Partition = o.Partition
			kr.Context = explicitPartition
		}
		for _, h := range o.Headers {
			kr.Headers = append(kr.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		prod.Produce(context.Background(), kr, st.onProduced)
	}
	return nil
}

// deadLetter returns the dead-letter record of r: its key, value and
// headers, plus headers naming the error and where the record came from.
//
// The record must fit MaxRecordBytes, or the broker would refuse it and the
// stage would stop at the same record on every restart: the error text is
// cut to maxErrorHeader bytes, and if the record is still too large its
// value, then its key and headers, are left out (the sluice.omitted header
// says which, and sluice.topic/partition/offset say where the original is).
func (st *stage) deadLetter(r *kgo.Record, err error) *kgo.Record {
	msg := err.Error()
	if len(msg) > maxErrorHeader {
		msg = msg[:maxErrorHeader] + "... (cut)"
	}
	meta := []kgo.RecordHeader{
		{Key: "sluice.error", Value: []byte(msg)},
		{Key: "sluice.stage", Value: []byte(st.name)},
		{Key: "sluice.topic", Value: []byte(r.Topic)},
		{Key: "sluice.partition", Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
		{Key: "sluice.offset", Value: strconv.AppendInt(nil, r.Offset, 10)},
	}
	key, value, hs := r.Key, r.Value, append(slices.Clip(r.Headers), meta...)
	limit := st.p.cfg.maxRecordBytes
	if dlqSize(key, value, hs) > limit {
		value = nil
		omitted := "value"
		if dlqSize(key, value, hs) > limit {
			key, hs, omitted = nil, meta, "key, value and headers"
		}
		hs = append(hs, kgo.RecordHeader{Key: "sluice.omitted", Value: []byte(omitted + ": the dead-letter record would exceed MaxRecordBytes; read the original at sluice.topic/partition/offset")})
		st.log.Warn("dead-letter record too large: leaving out "+omitted, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset)
	}
	return &kgo.Record{Topic: st.p.cfg.dlq, Key: key, Value: value, Headers: hs, Timestamp: r.Timestamp}
}

// maxErrorHeader bounds the sluice.error header of a dead-letter record.
const maxErrorHeader = 4096

// dlqSize is exec.RecordSize of a dead-letter record.
func dlqSize(k, v []byte, hs []kgo.RecordHeader) int {
	n := len(k) + len(v) + 70
	for _, h := range hs {
		n += len(h.Key) + len(h.Value) + 10
	}
	return n
}

// call runs the program, turning a panic into a *PanicError.
func (st *stage) call(t exec.Task, r *exec.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return st.program(t, r)
}

// produceChangelogs produces, for every dirty task and store, the latest
// value of each key written in this transaction to the store's changelog
// partition (the task's partition, set explicitly). It marks the time the
// cycle began to end (endingAt).
func (st *stage) produceChangelogs(prod producer) {
	st.endingAt = st.p.now()
	for _, t := range st.dirty {
		for store, kv := range t.changelog {
			topic := st.storeByName[store].topic
			promise := func(r *kgo.Record, err error) {
				if err != nil {
					st.failProduce(fmt.Errorf("producing to changelog %s: %w", r.Topic, err))
					return
				}
				t.noteChangelog(store, r.Offset)
			}
			for _, e := range kv {
				r := st.newRecord()
				r.Topic, r.Partition, r.Context = topic, t.id.Partition, explicitPartition
				r.Key, r.Value = e.key, e.value
				prod.Produce(context.Background(), r, promise)
			}
		}
	}
}

// recordChunk is how many records newRecord allocates at once.
const recordChunk = 64

// newRecord returns a zero kgo.Record to produce, carved from a chunk of
// recordChunk records so that the per-record path allocates one chunk, not
// one record, per recordChunk outputs and changelog records.
//
// INVARIANT: a record is handed out once and never reused (franz-go keeps
// a produced record, and its Key and Value, until its promise ran): a full
// chunk is left to the garbage collector, which frees it once no record of
// it is referenced. endRecords drops the rest of a chunk at a cycle's end,
// so that an idle stage keeps no produced record's bytes alive.
func (st *stage) newRecord() *kgo.Record {
	if len(st.recs) == 0 {
		st.recs = make([]kgo.Record, recordChunk)
	}
	r := &st.recs[0]
	st.recs = st.recs[1:]
	return r
}

// endRecords forgets the rest of newRecord's chunk (see newRecord).
func (st *stage) endRecords() { st.recs = nil }

// applyDirty applies every dirty task's batch with its checkpoint.
func (st *stage) applyDirty() error {
	st.endRecords()
	defer func() { st.dirty = st.dirty[:0] }()
	for _, t := range st.dirty {
		if err := t.apply(); err != nil {
			return fmt.Errorf("stage %s: %w", st.name, err)
		}
	}
	return nil
}

func (st *stage) discardDirty() {
	// franz-go rewinds to the committed offsets after an abort: what the
	// time order knew of positions past them is stale.
	st.order.reset()
	st.endRecords()
	for _, t := range st.dirty {
		t.reset()
	}
	st.dirty = st.dirty[:0]
}

// taskOf returns the task of partition (nil: none) and whether it
// was revoked since the cycle began, or, with no task, dropped after a
// revoke and not assigned again.
func (st *stage) taskOf(partition int32) (t *task, revoked bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	t = st.mu.tasks[partition]
	if t == nil {
		return nil, st.mu.dropped[partition]
	}
	return t, st.mu.revoked[partition]
}

// onRevoked marks revoked (or lost) tasks. It must not wait for the loop: the
// transact session calls it while holding the lock that End needs.
//
// franz-go's GroupTransactSession calls it at most once between two Ends
// (its wrapper returns early while its own revoked flag is set), so it is not
// the only way the stage learns of a revoke: see onSync and onAssigned.
func (st *stage) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if len(revoked) == 0 {
		// kgo's cooperative rebalance ends with an empty revoke; the
		// session does not abort for it, and nothing is revoked.
		return
	}
	st.sawRevoke.Store(true)
	st.p.setPhase(st, phaseRebalancing)
	st.forgetLag(revoked)
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ps := range revoked {
		for _, p := range ps {
			if _, ok := st.mu.tasks[p]; ok {
				st.mu.revoked[p] = true
			}
		}
	}
}

// onSync sees every assignment the member receives, in every generation,
// before kgo revokes what it lacks: a task with an input partition missing
// from it is revoked, whether or not a revoke callback follows. It runs on
// kgo's group goroutine, concurrently with the loop.
func (st *stage) onSync(assigned map[string][]int32) {
	held := make(map[string]map[int32]bool, len(assigned))
	for topic, ps := range assigned {
		m := make(map[int32]bool, len(ps))
		for _, p := range ps {
			m[p] = true
		}
		held[topic] = m
	}
	st.forgetLagExcept(held)
	var phase stagePhase
	defer func() { st.p.setPhase(st, phase) }() // after the unlock below
	st.mu.Lock()
	defer st.mu.Unlock()
	phase = st.syncPhaseLocked(held)
	for p, t := range st.mu.tasks {
		if st.mu.revoked[p] {
			continue
		}
		for topic := range t.topics {
			if !held[topic][p] {
				st.mu.revoked[p] = true
				st.log.Info("task left this member's assignment", "partition", p, "topic", topic)
				break
			}
		}
	}
}

// dropRevoked closes the tasks revoked since the last cycle. Called by the
// loop between transactions.
func (st *stage) dropRevoked() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for p := range st.mu.revoked {
		if t := st.mu.tasks[p]; t != nil {
			t.close()
			delete(st.mu.tasks, p)
			st.mu.dropped[p] = true
			st.log.Info("task revoked", "partition", p)
		}
		delete(st.mu.revoked, p)
	}
}

func (st *stage) dropAllTasks() {
	st.order.reset()
	st.discardDirty()
	st.mu.Lock()
	defer st.mu.Unlock()
	for p, t := range st.mu.tasks {
		t.close()
		delete(st.mu.tasks, p)
	}
	clear(st.mu.revoked)
	clear(st.mu.dropped)
}

// onAssigned runs after the group fetched the committed offsets of newly
// assigned partitions as stable (KIP-447: the fetch waited for pending
// transactional commits) and before fetching starts: the only safe moment to
// restore those tasks. It returns the offsets unchanged.
func (st *stage) onAssigned(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var parts []int32
	seen := map[int32]bool{}
	for _, ps := range offsets {
		for p := range ps {
			if !seen[p] {
				seen[p] = true
				parts = append(parts, p)
			}
		}
	}
	st.mu.Lock()
	fresh := parts[:0]
	for _, p := range parts {
		old := st.mu.tasks[p]
		if old != nil && !st.mu.revoked[p] {
			// kgo hands over only partitions it did not consume a
			// moment ago. An input this task already consumes came
			// back after a revoke or loss that no callback reported
			// (franz-go reports one per transaction): the task is
			// stale. Only inputs the task never had (the rest of a
			// task after an inconsistent earlier assignment) keep it.
			stale := false
			for topic, ps := range offsets {
				if _, ok := ps[p]; ok && old.topics[topic] {
					stale = true
				}
			}
			if !stale {
				for topic, ps := range offsets {
					if _, ok := ps[p]; ok {
						old.topics[topic] = true
					}
				}
				continue
			}
			st.log.Info("task came back after an unreported revoke: restoring it", "partition", p)
		}
		if old != nil {
			old.close()
			delete(st.mu.tasks, p)
		}
		delete(st.mu.revoked, p)
		delete(st.mu.dropped, p)
		fresh = append(fresh, p)
	}
	parts = fresh
	st.mu.Unlock()
	// A task restored now starts with no lag known (the next polls tell):
	// what its partitions showed before they left is stale.
	st.forgetLag(offsetsParts(offsets, parts))
	offsets, starts, err := st.resolveStarts(ctx, offsets)
	if err != nil {
		st.log.Error("assignment failed", "partitions", parts, "err", err)
		return nil, err
	}
	st.mu.Lock()
	for topic, ps := range starts {
		for p, eo := range ps {
			if t := st.mu.tasks[p]; t != nil && !slices.Contains(parts, p) {
				t.start[topic] = eo
			}
		}
	}
	st.mu.Unlock()
	if len(parts) == 0 {
		st.p.setPhase(st, phaseRunning)
		return offsets, nil
	}

	start := time.Now()
	st.p.setPhase(st, phaseRestoring)
	tasks, err := st.restore(ctx, parts)
	st.metrics.restoreNanos.Add(int64(time.Since(start)))
	if err != nil {
		st.p.setPhase(st, phaseRebalancing)
		st.log.Error("restore failed", "partitions", parts, "err", err)
		return nil, err
	}
	defer st.p.setPhase(st, phaseRunning)
	st.mu.Lock()
	for _, t := range tasks {
		for topic, ps := range offsets {
			if _, ok := ps[t.id.Partition]; ok {
				t.topics[topic] = true
			}
			if eo, ok := starts[topic][t.id.Partition]; ok {
				t.start[topic] = eo
			}
		}
		st.mu.tasks[t.id.Partition] = t
	}
	st.mu.Unlock()
	st.log.Info("tasks assigned", "partitions", parts, "restore", time.Since(start))
	return offsets, nil
}

// stageMetrics counts what a stage did.
type stageMetrics struct {
	records      atomic.Int64
	commits      atomic.Int64
	aborts       atomic.Int64
	skipped      atomic.Int64
	restarts     atomic.Int64
	emitted      atomic.Int64
	restored     atomic.Int64
	rebuilds     atomic.Int64
	deadLettered atomic.Int64
	lostCycles   atomic.Int64
	late         atomic.Int64
	nullKeys     atomic.Int64
	punctFailed  atomic.Int64
	failed       atomic.Int64
	restoreNanos atomic.Int64
	commitNanos  atomic.Int64
	idleNanos    atomic.Int64
	applyNanos   atomic.Int64
	lastCommit   atomic.Int64 // Unix ns of the last committed cycle
	// transientAborts counts the transactions aborted after a flush that
	// failed for the broker's circumstances, without a restart
	// (settleTransient); each is in aborts too.
	transientAborts atomic.Int64

	// obs holds the stage's histograms; nil without MetricsRegisterer.
	obs *stageObs
	// oldestInput is the oldest input timestamp of the open cycle (Unix
	// ns, 0: none; loop only), for the end-to-end latency.
	oldestInput int64
}
