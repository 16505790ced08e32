package processor

import (
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Transient broker trouble under exactly-once (issue 11).
//
// When a broker dies, the partitions it led have no leader, and the
// coordinators it hosted answer nowhere, until the cluster fails over
// (broker.session.timeout.ms and a leader election: 10 to 20 s). A
// transaction that wrote to one of those partitions cannot flush until
// then. Restarting the stage's client for it (new producer id, group
// rejoin, tasks restored) costs a rebalance that stalls every instance,
// for a transaction whose outcome is known: it never asked to commit.
// Instead the stage gives up the flush early enough to abort the
// transaction itself, before the broker times it out and bumps the
// producer's epoch, and goes on with the next cycle (settleTransient).

// flushDeadline returns when the open transaction's flush gives up: half the
// transaction timeout after the transaction began.
//
// The broker aborts a transaction on its own (and bumps the producer's
// epoch, so that this producer's next request fails and the stage must
// restart) once the transaction timeout passed since the broker's first
// sight of it, its first partition added, which is after txnBegan. Until
// then the client may still end it. A flush that gives up at the half
// leaves the other half for what must follow it before the broker's
// timeout: the abort (franz-go first waits for the produce requests in
// flight, which a dead broker's closed connections end at once, then
// sends EndTxn), or on the normal path the offset commit, the heartbeat
// and the commit's EndTxn. A later deadline would leave the abort a race
// with the broker's timer; an earlier one would fail flushes that are
// only slow (a loaded machine): a gather lasts a commit interval (100 ms by
// default), so half of a 10 s timeout is 50 intervals for its records'
// acknowledgements.
//
// A gather that itself outlasted half the timeout (records that each take
// seconds of the user's code) still gets a tenth of the timeout to flush
// from now: most of its records were acknowledged while it processed the
// rest, and failing its flush at once would abort it every time, however
// small the transactions got.
func (st *stage) flushDeadline() time.Time {
	t := st.p.cfg.txnTimeout
	return maxTime(st.txnBegan.Add(t/2), time.Now().Add(t/10))
}

// shrinkGathers caps the next gathers at half the n records of a
// transaction whose flush timed out. A flush can time out without any
// broker failing: a large transaction on a loaded machine or cluster. The
// same transaction would time out again, forever; halving it each time ends
// that. growGathers lifts the cap again as transactions commit.
func (st *stage) shrinkGathers(n int) {
	c := max(n/2, 1)
	if st.gatherCap == 0 || c < st.gatherCap {
		st.gatherCap = c
	}
}

// growGathers doubles the gather cap after a committed transaction, and
// removes it once it no longer limits anything (the record cap).
func (st *stage) growGathers() {
	if st.gatherCap == 0 {
		return
	}
	st.gatherCap *= 2
	if st.gatherCap >= st.cfg.maxRecords {
		st.gatherCap = 0
	}
}

// eosRetryTimeout returns how long franz-go retries a request of a key before
// it gives up: franz-go's defaults (the session timeout for the group's
// join, sync and heartbeat; 30 s for the rest), except for TxnOffsetCommit,
// which gets a quarter of the transaction timeout.
//
// The transaction's offset commit goes to the group coordinator. While that
// node is dead, franz-go would retry it until the group moved (10 to 20 s)
// and send it only then, after the transaction coordinator had timed the
// transaction out and bumped the producer's epoch: INVALID_PRODUCER_EPOCH,
// and a restart. Given up within a quarter of the timeout (the flush ended
// at most half the timeout after the transaction began), the commit fails
// while the transaction coordinator still takes the abort, and the stage
// goes on (abortAgain). A coordinator that is only slow or loading answers
// well within it.
func eosRetryTimeout(session, txn time.Duration) func(int16) time.Duration {
	return func(key int16) time.Duration {
		switch key {
		case int16(kmsg.JoinGroup), int16(kmsg.SyncGroup), int16(kmsg.Heartbeat), int16(kmsg.ConsumerGroupHeartbeat):
			return session
		case int16(kmsg.TxnOffsetCommit):
			return txn / 4
		}
		return 30 * time.Second
	}
}
