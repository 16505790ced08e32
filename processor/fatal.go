package processor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kgox"
)

// Three kinds of failure, three answers (docs/exactly-once.md, "Failures").
//
//   - Fatal: the brokers refuse what the stage is configured to do
//     (authorization, a setting outside the broker's bounds, a broker too
//     old). Retrying cannot help: Run returns a *FatalError naming the cause
//     and the fix, within seconds.
//   - Unknown outcome of a commit, and failures of the stage's client
//     (fenced producer, an abort that did not land): the stage drops its
//     uncommitted state, makes a new client and restores. (A flush that
//     timed out while a broker failed over only aborts the transaction:
//     transient.go.) Restarts back off
//     exponentially with jitter, up to restartBackoffMax, are counted
//     (StageMetrics.Restarts) and logged once per change of cause.
//   - Retriable errors inside franz-go (leader moves, coordinator loads):
//     franz-go retries them itself; the stage logs each distinct fetch error
//     once.

// FatalError is returned by Run when a stage hits an error that retrying
// cannot fix: Kafka refused an authorization, a setting is outside the
// broker's bounds, the broker is too old, or an input topic vanished. Fix
// says what to change (empty when the cause's message says it already, as
// for errors wrapping ErrConfig).
type FatalError struct {
	Stage string
	Err   error  // the cause, as Kafka or franz-go reported it
	Fix   string // what to change
}

func (e *FatalError) Error() string {
	if e.Fix == "" {
		return fmt.Sprintf("stage %s: fatal: %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("stage %s: fatal: %v: %s", e.Stage, e.Err, e.Fix)
}

// Unwrap returns the cause.
func (e *FatalError) Unwrap() error { return e.Err }

// fatal returns the *FatalError of err if err is one that retrying cannot
// fix, else nil.
func (st *stage) fatal(err error) *FatalError {
	if err == nil {
		return nil
	}
	if fe, ok := errors.AsType[*FatalError](err); ok {
		return fe
	}
	fix := ""
	c := &st.p.cfg
	switch {
	case errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		fix = fmt.Sprintf("grant the application's principal WRITE and DESCRIBE on the TransactionalId %q (or on the prefix %q)", st.txnID, c.app+"-")
	case errors.Is(err, kerr.GroupAuthorizationFailed):
		fix = fmt.Sprintf("grant the application's principal READ on the consumer group %q (or on the prefix %q)", st.group, c.app+"-")
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		fix = fmt.Sprintf("grant the application's principal READ on the stage's input topics, WRITE on its output topics, and READ and WRITE on the internal topics prefixed %q (docs/security.md)", c.app+"-")
	case errors.Is(err, kerr.ClusterAuthorizationFailed):
		fix = "grant the application's principal IDEMPOTENT_WRITE on the cluster (idempotent and transactional producers need it on brokers before 2.8)"
	case errors.Is(err, kerr.InvalidTransactionTimeout):
		fix = fmt.Sprintf("processor.TransactionTimeout(%v) is above the broker's transaction.max.timeout.ms: lower it, or raise that broker setting", c.txnTimeout)
	case errors.Is(err, kerr.InvalidSessionTimeout):
		fix = fmt.Sprintf("processor.SessionTimeout(%v) is outside the broker's group.min.session.timeout.ms and group.max.session.timeout.ms: change one of them", c.sessionTimeout)
	case errors.Is(err, kerr.UnsupportedVersion), errors.Is(err, kerr.UnsupportedForMessageFormat):
		fix = "the broker does not support what sluice needs (Kafka 2.5 or later, for KIP-447 transactions): upgrade the brokers"
	case errors.Is(err, kerr.InconsistentGroupProtocol):
		fix = fmt.Sprintf("another member of the group %q does not use sluice's task balancer (%s): stop it, or give this application another id", st.group, "sluice-task-v1")
	case errors.Is(err, kerr.GroupMaxSizeReached):
		fix = fmt.Sprintf("the group %q reached the broker's group.max.size: run fewer instances or raise that setting", st.group)
	case errors.Is(err, ErrConfig):
		// The message says what to change already.
	case errors.Is(err, kerr.SaslAuthenticationFailed), errors.Is(err, kerr.UnsupportedSaslMechanism):
		fix, _ = kgox.ConnectFix("processor", err)
	default:
		return nil
	}
	return &FatalError{Stage: st.name, Err: err, Fix: fix}
}

// inputGone checks, after a fetch error that says a topic is unknown, whether
// one of the stage's input topics was deleted (or deleted and recreated)
// while the stage ran, and returns the *FatalError saying so. franz-go keeps
// retrying such a topic forever; a topic created again under the same name
// is another topic, whose offsets the group's commits do not describe.
func (st *stage) inputGone(ctx context.Context, cl *kgo.Client, topic string, err error) *FatalError {
	if cl == nil || !(errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)) {
		return nil
	}
	input := false
	for _, in := range st.inputs {
		input = input || in.name == topic
	}
	if !input {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	td, lerr := kadm.NewClient(cl).ListTopics(lctx, topic)
	if lerr != nil {
		return nil // cannot tell now; franz-go retries
	}
	d, ok := td[topic]
	switch {
	case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
		return &FatalError{Stage: st.name, Err: fmt.Errorf("input topic %s was deleted while the stage ran: %w", topic, err),
			Fix: "create the topic again and reset the application's offsets for it (or remove it from the topology), then start again"}
	case d.Err == nil && st.inputIDs != nil && st.inputIDs[topic] != ([16]byte{}) && d.ID != st.inputIDs[topic]:
		return &FatalError{Stage: st.name, Err: fmt.Errorf("input topic %s was deleted and created again while the stage ran: %w", topic, err),
			Fix: "the group's committed offsets describe the old topic: reset the application's offsets for the new one, then start again"}
	}
	return nil
}

const (
	restartBackoffMin = 100 * time.Millisecond
	restartBackoffMax = 30 * time.Second
)

// restartBackoff returns the wait before the restart that follows n
// consecutive restarts without a commit in between: exponential from
// restartBackoffMin, capped at restartBackoffMax, with ±20% jitter.
func restartBackoff(n int) time.Duration {
	d := restartBackoffMin
	for i := 1; i < n && d < restartBackoffMax; i++ {
		d *= 2
	}
	d = min(d, restartBackoffMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// errorLog remembers the last error text logged, so that a failure that
// repeats is logged once per change rather than on every attempt.
type errorLog struct {
	last  string
	count int
}

// changed notes err and reports whether its text differs from the last one.
func (l *errorLog) changed(err error) bool {
	s := err.Error()
	if s == l.last {
		l.count++
		return false
	}
	l.last, l.count = s, 1
	return true
}

// startupFatal reports whether an error of Run's start (checking and creating
// topics) is one that retrying cannot fix: an authorization refused, a
// policy or a setting the broker rejects.
func startupFatal(err error) bool {
	for _, e := range []error{kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.SaslAuthenticationFailed, kerr.PolicyViolation, kerr.InvalidConfig, kerr.InvalidReplicationFactor,
		kerr.InvalidPartitions, kerr.InvalidTopicException, kerr.UnsupportedVersion} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
