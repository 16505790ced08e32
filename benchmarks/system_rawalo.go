package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// raw-alo: the at-least-once limit of the broker and the client (issue 16).
// It is franz-go's own pattern for committing what has been processed without
// stopping to process (examples/goroutine_per_partition_consuming/
// autocommit_marks, and kgo.AutoCommitMarks's doc):
//
//   - one goroutine per assigned partition processes that partition's
//     fetches (the poll loop only hands them out), with the partition's own
//     state, so partitions run in parallel on as many cores as there are;
//   - outputs are produced asynchronously, and an input batch's offset is
//     marked (kgo.Client.MarkCommitOffsets) in the produce callback of its
//     last acknowledged output, in the partition's order;
//   - franz-go's autocommit commits the marked offsets every commit
//     interval in the background (kgo.AutoCommitMarks with
//     kgo.AutoCommitInterval): no Flush, no synchronous commit, nothing
//     waits;
//   - kgo.BlockRebalanceOnPoll keeps a rebalance from revoking a partition
//     between a poll and the hand-off; on revoke the partition's goroutine
//     stops, the producer is flushed and the marks are committed.
//
// INVARIANT: a partition's committed offset never passes an input record
// whose outputs are not all acknowledged: a batch is marked only when its own
// outputs and those of every earlier batch of the partition are (markQueue).
// That is at-least-once; with no failure it is exact, which the harness
// checks like every other row's output.
//
// raw-alo-1loop is the same without the goroutines: the poll loop processes
// every partition itself (one core for the work, as raw-eos and the naive
// loop have).

// markBatch is one partition's records of one poll. left counts its outputs
// not yet acknowledged, plus one while the batch is being processed.
type markBatch struct {
	left atomic.Int64
	next kgo.EpochOffset // the offset after the batch's last record
	q    *markQueue
}

// promise is the produce callback of every output of the batch.
func (b *markBatch) promise(_ *kgo.Record, err error) {
	if err != nil {
		b.q.fail(err)
		return
	}
	b.release()
}

func (b *markBatch) release() {
	if b.left.Add(-1) == 0 {
		b.q.advance()
	}
}

// markQueue is one input partition's batches that are not yet marked, in poll
// order.
type markQueue struct {
	cl        *kgo.Client
	topic     string
	partition int32
	fail      func(error)

	mu struct {
		sync.Mutex
		batches []*markBatch
	}
}

func (q *markQueue) push(b *markBatch) {
	q.mu.Lock()
	q.mu.batches = append(q.mu.batches, b)
	q.mu.Unlock()
}

// advance marks the offset after the longest acknowledged prefix of the
// queue. Marks that arrive out of order are harmless: franz-go ignores a mark
// below the current one.
func (q *markQueue) advance() {
	q.mu.Lock()
	var next kgo.EpochOffset
	marked := false
	for len(q.mu.batches) > 0 && q.mu.batches[0].left.Load() == 0 {
		next, marked = q.mu.batches[0].next, true
		q.mu.batches[0] = nil
		q.mu.batches = q.mu.batches[1:]
	}
	q.mu.Unlock()
	if marked {
		q.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{q.topic: {q.partition: next}})
	}
}

// partWorker processes one partition's fetches in order, with the
// partition's queue and state (its own: the maps of rawALO change under it).
type partWorker struct {
	q     *markQueue
	state *memState
	in    chan kgo.FetchTopicPartition
	quit  chan struct{}
	done  chan struct{}
}

// rawALO is one stage's client and its partition workers.
type rawALO struct {
	r        *runSpec
	st       *rawStage
	cl       *kgo.Client
	parallel bool

	errOnce sync.Once
	err     atomic.Pointer[error]
	failed  chan struct{}

	// workers and queues are touched only by the poll loop and by the
	// rebalance callbacks, which kgo.BlockRebalanceOnPoll runs only while
	// the loop is not between a poll and its AllowRebalance.
	workers map[int32]*partWorker
	queues  map[int32]*markQueue
	states  map[int32]*memState
}

func (a *rawALO) fail(err error) {
	a.errOnce.Do(func() {
		a.err.Store(&err)
		close(a.failed)
	})
}

// runRawALO runs one stage with a goroutine per partition (raw-alo), or with
// the poll loop doing all the work (raw-alo-1loop).
func runRawALO(parallel bool) rawLoop {
	return func(ctx context.Context, r *runSpec, st *rawStage) error {
		a := &rawALO{r: r, st: st, parallel: parallel, failed: make(chan struct{}),
			workers: map[int32]*partWorker{}, queues: map[int32]*markQueue{}, states: map[int32]*memState{}}
		cl, err := kgo.NewClient(append(baseRawOpts(r, st),
			kgo.AutoCommitMarks(),
			kgo.AutoCommitInterval(r.commitInterval),
			kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsAssigned(a.assigned),
			kgo.OnPartitionsRevoked(a.revoked),
			kgo.OnPartitionsLost(a.lost),
		)...)
		if err != nil {
			return err
		}
		a.cl = cl
		err = a.poll(ctx)
		// Close revokes every partition: revoked stops the workers,
		// flushes and commits the marks.
		cl.CloseAllowingRebalance()
		if p := a.err.Load(); p != nil {
			err = errors.Join(err, *p)
		}
		if err != nil {
			return fmt.Errorf("raw-alo %s: %w", st.group, err)
		}
		return nil
	}
}

func (a *rawALO) poll(ctx context.Context) error {
	for {
		fetches := a.cl.PollRecords(ctx, a.r.maxRecords)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			a.cl.AllowRebalance()
			return nil
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetching %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			a.cl.AllowRebalance()
			return ferr
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			if !a.parallel {
				a.process(p, a.queues[p.Partition], a.states[p.Partition], ctx.Done())
				return
			}
			w := a.workers[p.Partition]
			if w == nil {
				// BlockRebalanceOnPoll rules this out: a partition is
				// assigned before it is fetched, and revoked only
				// between polls.
				a.fail(fmt.Errorf("records of %s/%d, which has no worker", p.Topic, p.Partition))
				return
			}
			select {
			case w.in <- p:
			case <-a.failed:
			case <-ctx.Done():
			}
		})
		a.cl.AllowRebalance()
		select {
		case <-a.failed:
			return nil // the error is in a.err
		default:
		}
	}
}

// process runs the stage on one partition's records of one poll, produces
// the outputs, and queues the batch for marking. When stop is closed it
// gives up on the batch: the batch keeps its hold and is never marked, so
// its records are consumed again by the partition's next owner
// (at-least-once), and a stop does not wait for up to max-records records
// (each with a blocking produce) to be processed.
func (a *rawALO) process(p kgo.FetchTopicPartition, q *markQueue, state *memState, stop <-chan struct{}) {
	last := p.Records[len(p.Records)-1]
	b := &markBatch{q: q, next: kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}}
	b.left.Store(1) // held while processing
	q.push(b)
	promise := b.promise // one method value per batch, not per record
	emit := func(o *kgo.Record) {
		b.left.Add(1)
		a.cl.Produce(context.Background(), o, promise)
	}
	for i, in := range p.Records {
		if i%64 == 0 {
			select {
			case <-stop:
				return
			default:
			}
		}
		a.st.output(state, in, emit)
	}
	b.release()
}

func (a *rawALO) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	for _, ps := range assigned {
		for _, p := range ps {
			a.queues[p] = &markQueue{cl: cl, topic: a.st.input, partition: p, fail: a.fail}
			// At-least-once state is only exact without rebalances; in
			// the harness's runs there is one member per group.
			a.states[p] = newMemState(false)
			if !a.parallel {
				continue
			}
			w := &partWorker{q: a.queues[p], state: a.states[p], in: make(chan kgo.FetchTopicPartition, 4),
				quit: make(chan struct{}), done: make(chan struct{})}
			a.workers[p] = w
			go func() {
				defer close(w.done)
				for {
					select {
					case <-w.quit:
						return
					case f := <-w.in:
						a.process(f, w.q, w.state, w.quit)
					}
				}
			}()
		}
	}
}

func (a *rawALO) stopWorkers(ps map[string][]int32) {
	for _, parts := range ps {
		for _, p := range parts {
			if w := a.workers[p]; w != nil {
				close(w.quit)
				<-w.done
				delete(a.workers, p)
			}
			delete(a.queues, p)
			delete(a.states, p)
		}
	}
}

func (a *rawALO) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	a.stopWorkers(revoked)
	fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Flush(fctx); err != nil {
		a.fail(fmt.Errorf("flushing on revoke: %w", err))
		return
	}
	if err := cl.CommitMarkedOffsets(fctx); err != nil {
		a.fail(fmt.Errorf("committing on revoke: %w", err))
	}
}

func (a *rawALO) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	a.stopWorkers(lost)
}
