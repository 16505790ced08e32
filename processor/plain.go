package processor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionPlain runs one non-transactional client's lifetime, for the
// AtLeastOnce and AtMostOnce guarantees. Auto-commit is off: the cycle
// commits offsets itself, after the outputs were acknowledged
// (at-least-once) or before the records are processed (at-most-once; a
// record the Fail policy refuses moves them back to it, rewindUnprocessed).
//
// The client blocks rebalances while a cycle runs (kgo.BlockRebalanceOnPoll)
// and allows them between cycles, so a revoke always finds the previous
// cycle flushed, applied and committed: a revoked owner's late changelog
// writes cannot land after the new owner restored.
func (st *stage) sessionPlain(ctx context.Context) error {
	opts := append(st.clientOpts(), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("stage %s: %w: %w", st.name, ErrConfig, err)
	}
	defer func() {
		cl.Close()
		st.dropAllTasks()
	}()
	for {
		if err := st.cyclePlain(ctx, cl); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// cyclePlain runs one cycle without a transaction.
func (st *stage) cyclePlain(ctx context.Context, cl *kgo.Client) error {
	defer cl.AllowRebalance()
	st.dropRevoked()
	st.produceErr.Store(nil)
	st.emitted = 0
	started := time.Now()

	amo := st.cfg.guarantee == AtMostOnce
	done := map[string]map[int32]kgo.EpochOffset{} // offsets after the records processed
	processed := 0
	n, recErr := st.gather(ctx, cl, func(recs []*kgo.Record) error {
		if amo {
			// At-most-once: the offsets are committed before the
			// records are processed; a crash from here on loses them.
			committing := time.Now()
			err := commitSync(cl, after(recs))
			st.metrics.commitNanos.Add(int64(time.Since(committing)))
			st.notFromRecords(time.Since(committing))
			if err != nil {
				return fmt.Errorf("stage %s: %w: committing offsets before processing: %w", st.name, errUnknownOutcome, err)
			}
		}
		for i, r := range recs {
			if err := st.process(cl, r); err != nil {
				if amo {
					err = st.rewindUnprocessed(cl, recs[i:], err)
				}
				return err
			}
			markDone(done, r)
			processed++
		}
		return nil
	})
	punctuated := false
	if recErr == nil {
		punctuated, recErr = st.punctuateWall(cl, func() error { return nil })
	}
	if n == 0 && !punctuated {
		return recErr
	}
	defer st.metrics.cycleDone(started)
	ending := time.Now()
	st.produceChangelogs(cl)
	err := st.flush(cl, time.Now().Add(st.p.cfg.txnTimeout))
	st.metrics.ended(time.Since(ending))
	if err != nil {
		// Some outputs or changelog records may be written; nothing is
		// applied to Pebble or committed by this cycle. Restart the
		// client: the tasks are restored from the changelog, which
		// holds whatever was written, and at-least-once processes the
		// cycle's records again. Only a record the broker refuses as
		// such (MESSAGE_TOO_LARGE, INVALID_RECORD) stops an
		// at-least-once stage, since producing it again would fail
		// again; at-most-once committed the offsets already and so
		// loses the cycle's records (as it may).
		st.discardDirty()
		if !amo && rejectedRecords(err) {
			return err
		}
		st.metrics.lostCycles.Add(boolInt(amo))
		return fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	if h := st.p.hooks.afterCommit; h != nil {
		if err := h(st); err != nil {
			st.discardDirty()
			return err
		}
	}
	applying := time.Now()
	err = st.applyDirty()
	st.metrics.applied(time.Since(applying))
	if err != nil {
		return err
	}
	st.metrics.committed(processed, st.emitted)
	if !amo && len(done) > 0 {
		// At-least-once: the outputs and changelog records are
		// acknowledged; now the offsets. A crash before this commit
		// processes the records again.
		committing := time.Now()
		err := commitSync(cl, done)
		st.metrics.commitNanos.Add(int64(time.Since(committing)))
		if err != nil {
			st.log.Warn("committing offsets failed; the records will be processed again", "err", err)
		}
	}
	return recErr
}

// rewindUnprocessed keeps at-most-once's promise under the Fail policy:
// nothing past the failing record is committed. The poll's offsets were
// committed before processing, so when err is a record the Fail policy
// refused (*RecordError), rest (the failing record and every record polled
// after it, none of them processed) gets its offsets back: for each of its
// partitions the offset of its first record in rest is committed. A restart
// then resumes at the failing record, and at the first unprocessed record of
// every other partition, and loses none of them. Nothing is processed twice:
// the failing record's effects were dropped with its scope (the policy acts
// before any of them leave it), and the records after it were not run.
//
// Any other error is returned unchanged: its record may have produced some
// of its effects, and at-most-once must not run it again. If the commit
// fails, the restart skips rest (as a crash at this point would); the
// returned error then joins err with the commit's.
func (st *stage) rewindUnprocessed(cl *kgo.Client, rest []*kgo.Record, err error) error {
	var rerr *RecordError
	if !errors.As(err, &rerr) || len(rest) == 0 {
		return err
	}
	at := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range rest {
		ps := at[r.Topic]
		if ps == nil {
			ps = map[int32]kgo.EpochOffset{}
			at[r.Topic] = ps
		}
		if _, ok := ps[r.Partition]; !ok {
			ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	committing := time.Now()
	cerr := commitSync(cl, at)
	st.metrics.commitNanos.Add(int64(time.Since(committing)))
	if cerr != nil {
		st.log.Error("at-most-once: committing the failing record's offset failed; a restart resumes past it and past the records polled after it", "topic", rerr.Topic, "partition", rerr.Partition, "offset", rerr.Offset, "err", cerr)
		return errors.Join(err, fmt.Errorf("stage %s: rewinding the committed offsets to %s/%d@%d: %w", st.name, rerr.Topic, rerr.Partition, rerr.Offset, cerr))
	}
	return err
}

// markDone notes that r was processed.
func markDone(done map[string]map[int32]kgo.EpochOffset, r *kgo.Record) {
	ps := done[r.Topic]
	if ps == nil {
		ps = map[int32]kgo.EpochOffset{}
		done[r.Topic] = ps
	}
	ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
}

// after returns the offsets after the given records.
func after(recs []*kgo.Record) map[string]map[int32]kgo.EpochOffset {
	m := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range recs {
		markDone(m, r)
	}
	return m
}

// commitSync commits offsets and returns the first error, including
// per-partition errors. It does not take the run's context: the commit that
// ends the last cycle runs after that context is done.
func commitSync(cl *kgo.Client, offsets map[string]map[int32]kgo.EpochOffset) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
		if cerr != nil {
			err = cerr
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					err = errors.Join(err, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, perr))
				}
			}
		}
	})
	return err
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
