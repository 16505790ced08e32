package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// sessionEOS runs one transactional client's lifetime.
func (st *stage) sessionEOS(ctx context.Context) (err error) {
	sess, err := kgo.NewGroupTransactSession(st.clientOpts()...)
	if err != nil {
		return fmt.Errorf("stage %s: %w: %w", st.name, ErrConfig, err)
	}
	defer func() {
		sess.Close()
		st.dropAllTasks()
	}()
	// Initialize the producer id now rather than at the first Begin: the
	// InitProducerId fences a previous incarnation of this transactional id
	// (a crashed process, or this stage before an unknown outcome) and
	// settles its open transaction at once. Until it is settled, the group's
	// stable offset fetch and the restore's wait for the last stable offset
	// would wait for the broker to time it out.
	ictx, cancel := context.WithTimeout(ctx, 2*st.p.cfg.txnTimeout)
	_, _, err = sess.Client().ProducerID(ictx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		err = fmt.Errorf("stage %s: initializing transactional id %s: %w", st.name, st.txnID, err)
		if fe := st.fatal(err); fe != nil {
			return fe
		}
		return fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	st.cl.Store(sess.Client())
	defer st.cl.Store(nil)
	if err := st.loadInputIDs(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	for {
		if err := st.cycleEOS(ctx, sess); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// cycleEOS runs one transaction: poll up to the commit interval or the record
// cap, process, produce the changelogs, flush, commit with the input offsets
// (and the fence, fence.go), and apply the tasks' batches only once the
// commit is known. Its polls block rebalances until it returns.
func (st *stage) cycleEOS(ctx context.Context, sess *kgo.GroupTransactSession) error {
	defer sess.AllowRebalance()
	st.dropRevoked()
	st.produceErr.Store(nil)
	st.emitted = 0

	started := time.Now()
	n, began, recErr := st.gatherEOS(ctx, sess)
	if !began {
		return st.endEmptyRound(sess, recErr)
	}
	defer st.metrics.cycleDone(started) // operations hook (prom.go)
	moved := errors.Is(recErr, errPartitionMoved)
	if moved {
		recErr = nil
		st.movedStreak++
		if st.movedStreak > maxMovedStreak {
			// kgo keeps handing over records of a partition the
			// stage holds no task for: the two disagree. Rebuild.
			recErr = fmt.Errorf("stage %s: %w: %d cycles in a row polled records of partitions that moved", st.name, errUnknownOutcome, st.movedStreak)
			st.movedStreak = 0
		}
	}
	ending := time.Now()
	st.produceChangelogs(sess)
	var flushed time.Duration
	var transient error // a flush that failed for the broker's circumstances
	commit := recErr == nil && !moved
	if commit {
		err := st.flush(sess.Client(), st.flushDeadline())
		flushed = time.Since(ending)
		switch {
		case err == nil:
		case rejectedRecords(err):
			// The records' fault: the stage stops (after the abort).
			commit, recErr = false, err
		case fencedProducer(err):
			// The broker fenced this producer or aborted its
			// transaction (a zombie woken past the transaction
			// timeout): this producer's epoch is over. Abort, then
			// restart the client as after an unknown outcome (it
			// rejoins and restores) instead of stopping the stage.
			commit, recErr = false, fmt.Errorf("%w: %w", errUnknownOutcome, err)
		default:
			// Not the records' fault and not the producer's: the
			// flush timed out, or a retriable error outlived its
			// retries (a broker died and its partitions have no
			// leader until the cluster fails over). Abort; if the
			// transaction coordinator confirms the abort, nothing of
			// the cycle is anywhere and the session goes on
			// (settleTransient). The flush deadline leaves the abort
			// time to land before the broker's own timeout would
			// bump the producer's epoch (flushDeadline).
			commit, transient = false, err
		}
	}

	// Every record of the cycle is processed: let a waiting rebalance go
	// on while the transaction ends. franz-go's End is built for a revoke
	// or loss arriving meanwhile (it aborts), and the callbacks only mark
	// tasks. Ending with rebalances still blocked could hang: a member
	// that lost its membership (a zombie resumed) runs its lost callback
	// only once rebalances are allowed, and End's forced heartbeat would
	// wait for a heartbeat loop that has stopped.
	sess.AllowRebalance()
	ectx, cancel := context.WithTimeout(context.Background(), 2*st.p.cfg.txnTimeout)
	st.unconfirmed.Store(false)
	st.ending.Store(endUnknown)
	committed, endErr := sess.End(st.fenceContext(ectx), kgo.TransactionEndTry(commit))
	cancel()
	if endErr != nil && st.ending.Load() == endTriedAbort && retriableEnd(endErr) && st.fatal(endErr) == nil {
		cause := endErr
		if endErr = st.abortAgain(sess, endErr); endErr == nil {
			commit = false
			if transient == nil && recErr == nil {
				transient = fmt.Errorf("%w: %w", errAbortedAgain, cause)
			}
		}
	}
	ended := time.Now()
	if st.log.Enabled(ctx, slog.LevelDebug) {
		defer func() {
			st.log.Debug("transaction ended", "records", n, "committed", committed,
				"gathering", ending.Sub(started), "waiting_for_input", st.pace.idle,
				"flushing", flushed, "ending", ended.Sub(ending)-flushed, "applying", time.Since(ended))
		}()
	}
	// franz-go forgets its revoke flag in End; so do we (the flag only
	// decides whether an idle cycle ends an empty round, above).
	st.sawRevoke.Store(false)
	st.metrics.ended(time.Since(ending))
	if transient != nil {
		return st.settleTransient(n, transient, endErr)
	}
	return st.settleEOS(n, commit, committed, endErr, recErr)
}

// settleTransient settles a cycle whose flush failed for the broker's
// circumstances and that End then tried to abort.
//
// INVARIANT: the transaction never asked to commit (no EndTxn with commit
// was sent), so it did not commit, whatever End returned. When End
// returned no error, franz-go waited for every produce request in flight
// to end (AbortBufferedRecords), then either the coordinator answered the
// EndTxn abort, or no partition was ever added to the transaction, or
// franz-go marked its producer id for re-initialization, whose epoch bump
// aborts the transaction before the next one begins; and End rewound the
// consumer to the group's committed offsets (txn.go, "resetting to current
// committed state"). So the cycle's records come again, its produced
// records stay invisible to read_committed readers behind the abort
// marker, and discarding the tasks' batches leaves Pebble as it was.
// Nothing changed hands, so the session goes on without a restart.
//
// When End failed (the abort's EndTxn did not land: the coordinator is
// unreachable past End's deadline, or the broker already timed the
// transaction out and bumped the epoch), the producer and the consumer's
// positions are in a state the stage does not trust: restart as after an
// unknown outcome.
func (st *stage) settleTransient(n int, flushErr, endErr error) error {
	st.metrics.aborts.Add(1)
	st.discardDirty()
	if endErr != nil {
		return fmt.Errorf("stage %s: %w: aborting after %w: %w", st.name, errUnknownOutcome, flushErr, endErr)
	}
	st.metrics.transientAborts.Add(1)
	if errors.Is(flushErr, context.DeadlineExceeded) {
		st.shrinkGathers(n)
	}
	if st.transient.aborts == 0 {
		st.transient.since = time.Now()
		st.log.Warn("transaction aborted while the brokers could not take it (a broker failing over?); going on without a restart",
			"err", flushErr, "records", n, "next_gather_records", st.gatherCap)
	} else {
		st.log.Debug("transaction aborted again; retrying", "err", flushErr, "records", n, "aborts", st.transient.aborts+1)
	}
	st.transient.aborts++
	return nil
}

// retriableEnd reports whether an End that failed after deciding not to
// commit failed for the broker's circumstances (a timeout, a connection, a
// retriable Kafka error), which abortAgain may settle. An error that Kafka
// says is not retriable (a refused ACL on the offset commit, an invalid
// offset commit, a fenced instance id) would come back at every
// transaction: the stage fails (st.fatal) or restarts with its backoff
// instead of aborting forever in silence.
func retriableEnd(err error) bool {
	ke, ok := errors.AsType[*kerr.Error](err)
	return !ok || ke.Retriable
}

// errAbortedAgain is the cause settleTransient notes for a transaction that
// abortAgain settled.
var errAbortedAgain = errors.New("ending the transaction failed before it tried to commit; aborted again")

// abortAgain settles a transaction whose End failed after franz-go decided
// not to commit it (it logged will_try_commit=false: a revoke, an offset
// commit that failed, or an abort asked for), as when the transaction
// coordinator or the group coordinator is unreachable or moving.
//
// INVARIANT: no EndTxn with commit was sent, so the transaction did not
// commit, and End rewound the consumer to the committed offsets before it
// failed (txn.go rewinds whenever it did not try to commit). What End left
// uncertain is only the producer: franz-go's documented answer is to call
// End with TryAbort again, which re-sends the abort, or re-initializes the
// producer id with its epoch (KIP-360), which aborts whatever is still open
// of the transaction. When that succeeds the stage goes on as after an
// abort; when it fails, or the producer was fenced for good (the next
// Begin fails), the stage restarts as before.
func (st *stage) abortAgain(sess *kgo.GroupTransactSession, endErr error) error {
	ectx, cancel := context.WithTimeout(context.Background(), 2*st.p.cfg.txnTimeout)
	defer cancel()
	if _, err := sess.End(ectx, kgo.TryAbort); err != nil {
		return fmt.Errorf("%w; aborting again: %w", endErr, err)
	}
	// The line franz-go logs for the retry's re-initialized producer id
	// mentions "unconfirmed": it concerns the abort, not a commit.
	st.unconfirmed.Store(false)
	st.log.Debug("ending the transaction failed before it tried to commit; aborted it again", "err", endErr)
	return nil
}

// transientEnded notes a committed cycle: an episode of transient aborts
// (settleTransient) is over.
func (st *stage) transientEnded() {
	if st.transient.aborts == 0 {
		return
	}
	st.log.Warn("transactions commit again", "aborted", st.transient.aborts, "after", time.Since(st.transient.since).Round(time.Millisecond))
	st.transient.aborts = 0
}

// gatherEOS gathers and processes the cycle's records and runs the due
// wall-clock timers, beginning the transaction before the first record or
// timer. began reports whether it did.
func (st *stage) gatherEOS(ctx context.Context, sess *kgo.GroupTransactSession) (n int, began bool, err error) {
	begin := func() error {
		if began {
			return nil
		}
		if err := sess.Begin(); err != nil {
			// franz-go refuses to begin while its producer id is in a
			// state it cannot recover from by itself (after an abort
			// that failed to land): a new client can.
			return fmt.Errorf("stage %s: %w: beginning transaction: %w", st.name, errUnknownOutcome, err)
		}
		began = true
		st.txnBegan = time.Now()
		return nil
	}
	n, err = st.gather(ctx, sess, func(recs []*kgo.Record) error {
		if err := begin(); err != nil {
			return err
		}
		for _, r := range recs {
			if err := st.process(sess, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		_, err = st.punctuateWall(sess, begin)
	}
	return n, began, err
}

// endEmptyRound ends a cycle that began no transaction. After a revoke it
// ends the empty session round, so that franz-go forgets the revoke (its
// flag would abort the next transaction on purpose).
func (st *stage) endEmptyRound(sess *kgo.GroupTransactSession, recErr error) error {
	if !st.sawRevoke.Load() {
		return recErr
	}
	ectx, cancel := context.WithTimeout(context.Background(), 2*st.p.cfg.txnTimeout)
	_, err := sess.End(ectx, kgo.TryAbort)
	cancel()
	st.sawRevoke.Store(false)
	if err != nil && recErr == nil {
		return fmt.Errorf("stage %s: %w: %w", st.name, errUnknownOutcome, err)
	}
	return recErr
}

// settleEOS acts on how the cycle's transaction ended: a committed
// transaction's batches are applied with their checkpoints; an aborted or
// unknown one's are discarded. commit is whether the cycle asked to commit.
func (st *stage) settleEOS(n int, commit, committed bool, endErr, recErr error) error {
	switch {
	case endErr != nil:
		st.discardDirty()
		return fmt.Errorf("stage %s: %w: %w", st.name, errUnknownOutcome, endErr)
	case committed:
		st.movedStreak = 0
		st.transientEnded()
		st.growGathers()
		if h := st.p.hooks.afterCommit; h != nil {
			if err := h(st); err != nil {
				st.discardDirty()
				return err
			}
		}
		st.metrics.committed(n, st.emitted)
		if h := st.p.hooks.afterApply; h != nil {
			applied := append([]*task(nil), st.dirty...)
			defer h(st, applied)
		}
		applying := time.Now()
		err := st.applyDirty()
		st.metrics.applied(time.Since(applying))
		return err
	case commit && st.unconfirmed.Load():
		// franz-go could not confirm how its EndTxn ended (an
		// UNKNOWN_SERVER_ERROR) and reports the transaction as not
		// committed, though the broker may have committed it.
		st.discardDirty()
		return fmt.Errorf("stage %s: %w: franz-go could not confirm how the transaction ended", st.name, errUnknownOutcome)
	default:
		// Aborted: asked to abort (a record error, a failed flush, a
		// partition that moved), or franz-go aborted on purpose after a
		// revoke or loss, an abortable offset commit error
		// (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, a coordinator
		// moving, ...), a failed heartbeat, or an EndTxn that the broker
		// refused to commit: in each of these franz-go's EndTxn aborted.
		st.metrics.aborts.Add(1)
		st.discardDirty()
		return recErr // nil after an abort caused by a rebalance
	}
}

// maxMovedStreak bounds the cycles aborted in a row because kgo handed over
// records of a partition that moved (see movedStreak).
const maxMovedStreak = 3

// rejectedRecords reports whether a produce error says that the records
// themselves were refused: a Kafka error that is not retriable, such as
// MESSAGE_TOO_LARGE or INVALID_RECORD (franz-go also reports a record above
// its batch limit as MESSAGE_TOO_LARGE). Producing them again would fail
// again, so the stage stops. Any other produce error comes from the
// producer's circumstances: a fenced producer (a restart, see
// fencedProducer), or a retriable error that outlived its retries or a
// flush that timed out while a broker was unreachable (an abort, and the
// stage goes on: settleTransient).
func rejectedRecords(err error) bool {
	if fencedProducer(err) {
		return false
	}
	ke, ok := errors.AsType[*kerr.Error](err)
	return ok && !ke.Retriable
}

// fencedProducer reports whether a produce error comes from the
// transactional producer's standing rather than from the records: a newer
// producer with the same transactional id fenced it, or the broker aborted
// its transaction (the transaction timeout, KIP-890's TRANSACTION_ABORTABLE).
// Kafka Streams treats these as a task migration: close the tasks, rejoin.
func fencedProducer(err error) bool {
	for _, e := range []error{kerr.InvalidProducerEpoch, kerr.ProducerFenced, kerr.InvalidProducerIDMapping, kerr.UnknownProducerID, kerr.TransactionAbortable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
