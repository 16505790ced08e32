package processor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fencing. Kafka fences a transaction of a KIP-447 producer (one
// transactional id per instance) by the group generation of its
// TxnOffsetCommit: a member that was fenced out of the group (a zombie,
// resumed after a pause past its session timeout) gets ILLEGAL_GENERATION or
// UNKNOWN_MEMBER_ID, and its transaction aborts. franz-go sends a
// TxnOffsetCommit only for partitions whose position moved, so a transaction
// that consumed nothing (wall-clock timers only) would carry no generation
// check at all: a zombie could commit its timers' effects for tasks another
// member owns by then.
//
// So a transaction that consumed nothing commits the group's committed offset
// of one partition of a task the stage holds, unchanged: fence adds it to the
// request franz-go built (kgo.PreTxnCommitFnContext). The broker then checks
// the generation of every committing transaction, and a new owner's stable
// offset fetch (KIP-447) waits for it, as for any other commit.

// fenceContext returns ctx with the fence hook attached for End.
func (st *stage) fenceContext(ctx context.Context) context.Context {
	return kgo.PreTxnCommitFnContext(ctx, st.fence)
}

// fence makes sure req, the transaction's TxnOffsetCommit, is sent: when
// franz-go built it empty (the transaction consumed nothing), it adds the
// committed offset of one input partition of a task the stage holds,
// unchanged. The broker checks the generation once per request, so one
// partition fences the whole transaction. It runs inside End, on the loop's
// goroutine.
func (st *stage) fence(req *kmsg.TxnOffsetCommitRequest) error {
	if len(req.Topics) > 0 {
		return nil
	}
	committed := st.cl.Load().CommittedOffsets()
	st.mu.Lock()
	defer st.mu.Unlock()
	parts := make([]int32, 0, len(st.mu.tasks))
	for p := range st.mu.tasks {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		t := st.mu.tasks[p]
		if st.mu.revoked[p] {
			continue // not ours to commit for any more
		}
		for _, in := range st.inputs {
			if !t.topics[in.name] {
				continue
			}
			eo, ok := committed[in.name][p]
			if !ok || eo.Offset < 0 {
				eo, ok = t.start[in.name]
			}
			if !ok || eo.Offset < 0 {
				continue
			}
			rt := kmsg.NewTxnOffsetCommitRequestTopic()
			rt.Topic = in.name
			rt.TopicID = st.inputIDs[in.name]
			rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
			rp.Partition = p
			rp.Offset = eo.Offset
			rp.LeaderEpoch = eo.Epoch
			rp.Metadata = &req.MemberID
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			return nil
		}
	}
	return nil
}

// loadInputIDs reads the input topics' ids (TxnOffsetCommit v6+ names topics
// by id).
func (st *stage) loadInputIDs(ctx context.Context) error {
	topics := make([]string, len(st.inputs))
	for i, in := range st.inputs {
		topics[i] = in.name
	}
	td, err := kadm.NewClient(st.cl.Load()).ListTopics(ctx, topics...)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		return fmt.Errorf("stage %s: reading the input topics' ids: %w", st.name, err)
	}
	ids := make(map[string][16]byte, len(td))
	for name, d := range td {
		ids[name] = d.ID
	}
	st.inputIDs = ids
	return nil
}

// resolveStarts turns the relative start offsets kgo is about to use for
// partitions the group has no commit for (the reset: the log start) into
// absolute ones, so that a transaction of these tasks that consumed nothing
// still has an offset to fence with (see fence). It returns the offsets with
// the absolute ones in place, and records them per task.
func (st *stage) resolveStarts(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, map[string]map[int32]kgo.EpochOffset, error) {
	var relative []string
	for topic, ps := range offsets {
		for _, o := range ps {
			if o.EpochOffset().Offset < 0 {
				relative = append(relative, topic)
				break
			}
		}
	}
	starts := map[string]map[int32]kgo.EpochOffset{}
	if len(relative) == 0 || st.cfg.guarantee != ExactlyOnce {
		return offsets, starts, nil
	}
	// The session stores its client right after making it; the first
	// assignment can only be a few round trips ahead.
	cl := st.cl.Load()
	for cl == nil {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		cl = st.cl.Load()
	}
	lo, err := kadm.NewClient(cl).ListStartOffsets(ctx, relative...)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("stage %s: listing the start offsets of %v: %w", st.name, relative, err)
	}
	out := make(map[string]map[int32]kgo.Offset, len(offsets))
	for topic, ps := range offsets {
		m := maps.Clone(ps)
		for p, o := range ps {
			if o.EpochOffset().Offset >= 0 {
				continue
			}
			l, ok := lo.Lookup(topic, p)
			if !ok {
				continue
			}
			m[p] = kgo.NewOffset().At(l.Offset)
			if starts[topic] == nil {
				starts[topic] = map[int32]kgo.EpochOffset{}
			}
			starts[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: l.Offset}
		}
		out[topic] = m
	}
	return out, starts, nil
}

// watchLogger forwards franz-go's log lines to the stage's logger and watches
// for the one line that says an EndTxn's outcome is unconfirmed. franz-go
// then reports the transaction as not committed (End returns false and no
// error) although the broker may have committed it; nothing but this line
// tells that case from an abort. It asks franz-go for info lines always (a
// few per transaction) and passes on only those the inner logger wants.
//
// It also notes what franz-go's End decided before it sent EndTxn (its
// "transaction session ending" line): whether it tried to commit
// (endTriedCommit) or only to abort (endTriedAbort). An End that fails
// after deciding to abort leaves a transaction that never asked to commit
// (abortAgain).
type watchLogger struct {
	inner       kgo.Logger
	unconfirmed *atomic.Bool
	ending      *atomic.Int32 // nil: not noted
}

// What the last End decided before it sent EndTxn (watchLogger.ending).
const (
	endUnknown     int32 = iota // End returned before deciding
	endTriedAbort               // will_try_commit=false
	endTriedCommit              // will_try_commit=true
)

func (w watchLogger) Level() kgo.LogLevel {
	if l := w.inner.Level(); l > kgo.LogLevelInfo {
		return l // a user's debug logger still gets franz-go's debug lines
	}
	return kgo.LogLevelInfo
}

func (w watchLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if strings.Contains(msg, "unconfirmed") {
		w.unconfirmed.Store(true)
	}
	if w.ending != nil && msg == "transaction session ending" {
		// Unknown unless the line says which, explicitly: a franz-go that
		// renamed the key or changed its type must not make a failed
		// commit look like an abort (abortAgain would then discard a
		// transaction that may have committed).
		decided := endUnknown
		for i := 0; i+1 < len(keyvals); i += 2 {
			if k, _ := keyvals[i].(string); k == "will_try_commit" {
				if v, ok := keyvals[i+1].(bool); ok {
					decided = endTriedAbort
					if v {
						decided = endTriedCommit
					}
				}
			}
		}
		w.ending.Store(decided)
	}
	if level <= w.inner.Level() {
		w.inner.Log(level, msg, keyvals...)
	}
}

// userKgoLogger returns the franz-go logger among opts (given with
// KafkaOptions), or nil. It reads it from a client that is made and closed
// without connecting.
func userKgoLogger(opts []kgo.Opt) kgo.Logger {
	if len(opts) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, opts...)...)
	if err != nil {
		return nil
	}
	defer cl.Close()
	l, _ := cl.OptValue(kgo.WithLogger).(kgo.Logger) // nil unless given
	return l
}
