package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The raw baselines: bare franz-go consume -> process -> produce loops, one
// client and consumer group per stage, as sluice runs one per stage. The keyed
// work is the scenario's; state lives in memory (no changelog, no local
// store), so they mark what the broker and client allow:
//
//   - raw-alo (system_rawalo.go): at-least-once without a barrier, the limit;
//   - raw-alo-naive (runRawALONaive): the first raw-alo, flush + commit
//     every commit interval;
//   - raw-eos (runRawEOS): kgo.GroupTransactSession, one transaction per
//     commit interval or max records.

// memState is a stage's in-memory state. Under transactions, writes go to
// pending until the transaction commits.
type memState struct {
	committed map[string]int64
	pending   map[string]int64
	txn       bool
}

func newMemState(txn bool) *memState {
	return &memState{committed: map[string]int64{}, pending: map[string]int64{}, txn: txn}
}

func (s *memState) get(k []byte) int64 {
	if s.txn {
		if v, ok := s.pending[string(k)]; ok {
			return v
		}
	}
	return s.committed[string(k)]
}

func (s *memState) set(k []byte, v int64) {
	if s.txn {
		s.pending[string(k)] = v
	} else {
		s.committed[string(k)] = v
	}
}

func (s *memState) commit() {
	for k, v := range s.pending {
		s.committed[k] = v
	}
	clear(s.pending)
}

func (s *memState) abort() { clear(s.pending) }

// rawStage is one stage of a raw pipeline. output does the stage's keyed work
// on one input record, with the state the loop keeps for the record's
// partition (stateless stages ignore it), and hands every output record to
// emit.
type rawStage struct {
	group    string
	input    string
	txnID    string
	stateful bool
	output   func(st *memState, in *kgo.Record, emit func(*kgo.Record))
}

// rawStages returns the stages of the scenario's pipeline and the internal
// topics they need.
func rawStages(r *runSpec) ([]*rawStage, []string) {
	switch r.sc.name {
	case "passthrough":
		return []*rawStage{{
			group: r.app + "-map", input: r.input,
			output: func(_ *memState, in *kgo.Record, emit func(*kgo.Record)) {
				emit(&kgo.Record{Topic: r.output, Key: in.Key, Value: upper(in.Value), Timestamp: in.Timestamp})
			},
		}}, nil
	case "wordcount":
		repart := r.app + "-by-word-repartition"
		return []*rawStage{{
			group: r.app + "-split", input: r.input,
			output: func(_ *memState, in *kgo.Record, emit func(*kgo.Record)) {
				words(in.Value, func(w []byte) {
					emit(&kgo.Record{Topic: repart, Key: w, Value: w, Timestamp: in.Timestamp})
				})
			},
		}, {
			group: r.app + "-by-word", input: repart, stateful: true,
			output: func(counts *memState, in *kgo.Record, emit func(*kgo.Record)) {
				n := counts.get(in.Key) + 1
				counts.set(in.Key, n)
				emit(&kgo.Record{Topic: r.output, Key: in.Key, Value: strconv.AppendInt(nil, n, 10), Timestamp: in.Timestamp})
			},
		}}, []string{repart}
	case "aggregate":
		return []*rawStage{{
			group: r.app + "-sum", input: r.input, stateful: true,
			output: func(sums *memState, in *kgo.Record, emit func(*kgo.Record)) {
				s := sums.get(in.Key) + leadingNumber(in.Value)
				sums.set(in.Key, s)
				emit(&kgo.Record{Topic: r.output, Key: in.Key, Value: strconv.AppendInt(nil, s, 10), Timestamp: in.Timestamp})
			},
		}}, nil
	}
	return nil, nil
}

// rawLoop runs one stage until ctx ends; an error stops the whole pipeline.
type rawLoop func(ctx context.Context, r *runSpec, st *rawStage) error

// startRaw starts a raw pipeline: one loop per stage, each with its own
// client and consumer group.
func startRaw(loop rawLoop) func(ctx context.Context, r *runSpec) (*running, error) {
	return func(ctx context.Context, r *runSpec) (*running, error) {
		stages, internal := rawStages(r)
		if len(internal) > 0 {
			if err := r.createTopics(ctx, internal...); err != nil {
				return nil, err
			}
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		var (
			wg     sync.WaitGroup
			errMu  sync.Mutex
			runErr error
		)
		for i, st := range stages {
			st.txnID = fmt.Sprintf("%s-%d", st.group, i)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := loop(ctx, r, st); err != nil && ctx.Err() == nil {
					errMu.Lock()
					runErr = errors.Join(runErr, err)
					errMu.Unlock()
					cancel()
				}
			}()
		}
		go func() { wg.Wait(); close(done) }()
		return &running{
			stop:    func() error { cancel(); <-done; return runErr },
			done:    done,
			metrics: noMetrics,
			pid:     os.Getpid(),
		}, nil
	}
}

func baseRawOpts(r *runSpec, st *rawStage) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(r.brokers...),
		kgo.ConsumerGroup(st.group),
		kgo.ConsumeTopics(st.input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
	}
}

// runRawALONaive is the first raw-alo loop, kept as the raw-alo-naive row:
// poll, process, produce asynchronously; every commit interval flush the
// producer and then commit the polled offsets synchronously (at-least-once:
// offsets only ever cover acknowledged outputs). The flush and the commit
// stop all processing every interval: it is a transaction loop without
// EndTxn, not the client's limit (issue 16). raw-alo (system_rawalo.go) is.
func runRawALONaive(ctx context.Context, r *runSpec, st *rawStage) error {
	state := newMemState(false)
	cl, err := kgo.NewClient(append(baseRawOpts(r, st), kgo.DisableAutoCommit())...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	emit := func(o *kgo.Record) { cl.Produce(context.Background(), o, promise) }
	commit := func() error {
		fctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.Flush(fctx); err != nil {
			return err
		}
		if p := produceErr.Load(); p != nil {
			return *p
		}
		return cl.CommitUncommittedOffsets(fctx)
	}
	last := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, r.commitInterval)
		fetches := cl.PollRecords(pctx, r.maxRecords)
		cancel()
		if ctx.Err() != nil {
			return commit()
		}
		fetches.EachRecord(func(in *kgo.Record) { st.output(state, in, emit) })
		if time.Since(last) >= r.commitInterval {
			if err := commit(); err != nil {
				return fmt.Errorf("raw-alo %s: %w", st.group, err)
			}
			last = time.Now()
		}
	}
}

// runRawEOS: one transaction per commit interval (or max records), with
// kgo.GroupTransactSession, as sluice's cycle but without its state.
func runRawEOS(ctx context.Context, r *runSpec, st *rawStage) error {
	sess, err := kgo.NewGroupTransactSession(append(baseRawOpts(r, st),
		kgo.TransactionalID(st.txnID),
		kgo.TransactionTimeout(10*time.Second),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)...)
	if err != nil {
		return err
	}
	defer sess.Close()
	state := newMemState(true)
	var produceErr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceErr.CompareAndSwap(nil, &err)
		}
	}
	emit := func(o *kgo.Record) { sess.Produce(context.Background(), o, promise) }
	for ctx.Err() == nil {
		deadline := time.Now().Add(r.commitInterval)
		n, began := 0, false
		for n < r.maxRecords && ctx.Err() == nil && time.Now().Before(deadline) {
			pctx, cancel := context.WithDeadline(ctx, deadline)
			fetches := sess.PollRecords(pctx, r.maxRecords-n)
			cancel()
			for it := fetches.RecordIter(); !it.Done(); {
				in := it.Next()
				if !began {
					if err := sess.Begin(); err != nil {
						return fmt.Errorf("raw-eos %s: begin: %w", st.group, err)
					}
					began = true
				}
				n++
				st.output(state, in, emit)
			}
		}
		if !began {
			continue
		}
		ectx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		committed, err := sess.End(ectx, kgo.TransactionEndTry(produceErr.Load() == nil))
		cancel()
		if err != nil {
			return fmt.Errorf("raw-eos %s: end: %w", st.group, err)
		}
		if committed {
			state.commit()
		} else {
			state.abort()
		}
		if p := produceErr.Load(); p != nil {
			return fmt.Errorf("raw-eos %s: produce: %w", st.group, *p)
		}
	}
	return nil
}
