package sink

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/internal/kgox"
)

// ErrConfig is wrapped by every configuration error New returns; the message
// says which option to change. Run returns it too for what no retry can
// fix: input topics that do not exist, TLS or SASL settings the brokers
// refuse, and ACLs they lack (Read on an input topic, or on the consumer
// group), whose message names the ACL to grant (docs/security.md).
var ErrConfig = errors.New("sink: configuration error")

// Opt configures a Runner.
type Opt interface {
	apply(*cfg)
}

type opt struct{ fn func(*cfg) }

func (o opt) apply(c *cfg) { o.fn(c) }

type cfg struct {
	brokers        []string
	app            string
	name           string
	topics         []string
	instanceID     string
	commitInterval time.Duration
	maxRecords     int
	writeTimeout   time.Duration
	writeAttempts  int
	sessionTimeout time.Duration
	rebalanceTime  time.Duration
	heartbeat      time.Duration
	startOffset    kgo.Offset
	commitToKafka  bool
	// restartRecreated: see RestartRecreatedTopics.
	restartRecreated bool
	logger           *slog.Logger
	tls              *tls.Config    // see TLS
	sasl             sasl.Mechanism // see SASL
	kgoOpts          []kgo.Opt
}

// clientOpts are the options every Kafka client of the runner starts with:
// the seed brokers, TLS and SASL.
func (c *cfg) clientOpts() []kgo.Opt {
	return append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, kgox.Security(c.tls, c.sasl)...)
}

func defaultCfg() cfg {
	return cfg{
		name:           "sink",
		commitInterval: 100 * time.Millisecond,
		maxRecords:     1000,
		writeTimeout:   15 * time.Second,
		writeAttempts:  3,
		sessionTimeout: 45 * time.Second,
		rebalanceTime:  60 * time.Second,
		heartbeat:      3 * time.Second,
		startOffset:    kgo.NewOffset().AtStart(),
		logger:         slog.New(slog.DiscardHandler),
	}
}

// group is the consumer group's name, which also keys the sink's offsets.
func (c *cfg) group() string { return c.app + "-" + c.name }

// Brokers sets the seed brokers ("host:port"). Required. Maps to Kafka's
// bootstrap.servers.
func Brokers(brokers ...string) Opt {
	return opt{func(c *cfg) { c.brokers = append(c.brokers, brokers...) }}
}

// ApplicationID names the application. Required. The consumer group is
// <app>-<name> (see Name), and the sink stores its offsets under that group:
// changing either starts every partition afresh from StartOffset, and the
// sink receives the topic's records again.
func ApplicationID(app string) Opt { return opt{func(c *cfg) { c.app = app }} }

// Name names this sink within the application. Default "sink". See
// ApplicationID for what renaming costs.
func Name(name string) Opt { return opt{func(c *cfg) { c.name = name }} }

// Topics sets the input topics. Required; they must exist.
func Topics(topics ...string) Opt {
	return opt{func(c *cfg) { c.topics = append(c.topics, topics...) }}
}

// InstanceID turns on static group membership (Kafka's group.instance.id):
// a restarted process with the same id takes its partitions back at once
// instead of after a rebalance. Two running processes must never share one.
// Default: none (dynamic membership). With an instance id, Run leaves the
// group explicitly when it stops.
func InstanceID(id string) Opt { return opt{func(c *cfg) { c.instanceID = id }} }

// CommitInterval sets how long one batch gathers records before it is
// written (the sink's transaction rate). Default 100ms. A batch is cut short
// when a rebalance is waiting for it.
func CommitInterval(d time.Duration) Opt { return opt{func(c *cfg) { c.commitInterval = d }} }

// MaxRecordsPerBatch caps the records of one batch; the cap is enforced at
// the poll. Default 1000. It bounds the memory of a batch and the size, and
// so the duration, of the sink's transaction: a write must finish within
// WriteTimeout, and rebalances wait for it. Raise it for sinks that write a
// batch in a few statements; lower it for slow ones.
func MaxRecordsPerBatch(n int) Opt { return opt{func(c *cfg) { c.maxRecords = n }} }

// WriteTimeout bounds one Write call. Default 15s. The group's rebalances
// wait for a running batch, every attempt of its write included (see the
// package documentation), so New requires the commit interval plus
// WriteAttempts times the write timeout (plus the pauses between attempts:
// 200ms, 400ms, ...) to stay below RebalanceTimeout. The defaults take at
// most 100ms + 3 × 15s + 600ms of the 60s rebalance timeout.
func WriteTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.writeTimeout = d }} }

// WriteAttempts sets how often the runner tries a batch whose Write failed
// with an error other than ErrFenced before Run gives up and returns the
// error. Default 3. Retrying is safe: a retry of a write that did land is
// fenced by the compare-and-set. Every attempt counts against the rebalance
// timeout (see WriteTimeout).
func WriteAttempts(n int) Opt { return opt{func(c *cfg) { c.writeAttempts = n }} }

// SessionTimeout sets the group session timeout (Kafka's
// session.timeout.ms). Default 45s. A crashed or paused process keeps its
// partitions this long.
func SessionTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.sessionTimeout = d }} }

// RebalanceTimeout sets the group rebalance timeout (Kafka's
// max.poll.interval.ms for the join). Default 60s.
func RebalanceTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.rebalanceTime = d }} }

// HeartbeatInterval sets the group heartbeat interval (Kafka's
// heartbeat.interval.ms). Default 3s.
func HeartbeatInterval(d time.Duration) Opt { return opt{func(c *cfg) { c.heartbeat = d }} }

// StartOffset sets where a partition starts when the sink holds no offset
// for it, and where it goes on when its stored offset is below the
// partition's log start offset (retention deleted records before the sink
// got them: they are lost to the sink). Maps to Kafka's auto.offset.reset.
// Default: the start of the partition (kgo.NewOffset().AtStart()). The
// consumer group's committed offsets are never used.
//
// A stored offset is never replaced by StartOffset otherwise. When it lies
// above the partition's high watermark, or belongs to an earlier topic of
// the same name (the sink stores each offset with the topic's id, and a
// topic deleted and created again has a new one), Run returns a
// *PositionError (ErrOffsetAboveEnd, ErrTopicRecreated) that names the
// partition, the cause and the fix; see RestartRecreatedTopics. The same
// happens, after a rejoin, when the client's position is reset while it
// runs (a record arrives below the stored offset).
func StartOffset(o kgo.Offset) Opt { return opt{func(c *cfg) { c.startOffset = o }} }

// RestartRecreatedTopics makes the runner start a partition at the
// beginning of its topic when the topic was deleted and created again since
// the sink stored the partition's offset (the topic id stored with the
// offset is not the topic's id now), instead of Run failing with
// ErrTopicRecreated. The first batch's compare-and-set then replaces the old
// topic's position with the new one's. Default off: a recreated topic is
// more often a mistake (a script that recreates topics, a cluster replaced
// under the same name) than a wish to consume it again, and either way the
// sink's tables still hold the old topic's records.
//
// It also covers offsets stored without a topic id (by a sink of an earlier
// version) that lie above the high watermark: without an id the runner
// cannot tell a recreated topic from records the broker lost, and with this
// option it takes them for a recreated topic. Such an offset that lies within
// the topic is trusted, and the first write stores the topic's id with it.
// Brokers before Kafka 2.8 report no topic ids; then no ids are compared.
func RestartRecreatedTopics() Opt { return opt{func(c *cfg) { c.restartRecreated = true }} }

// CommitToKafka also commits each batch's offsets to the consumer group
// after the sink committed them, asynchronously, so that Kafka's tools
// (kafka-consumer-groups.sh, lag exporters) can show the sink's progress.
// Default off. These commits are for monitoring only: they may lag or fail,
// and the runner never reads them back.
func CommitToKafka() Opt { return opt{func(c *cfg) { c.commitToKafka = true }} }

// Logger sets the structured logger. Default: discard.
func Logger(l *slog.Logger) Opt { return opt{func(c *cfg) { c.logger = l }} }

// TLS makes the runner's Kafka clients dial the brokers with TLS
// configured by c (Kafka's security.protocol=SSL, or SASL_SSL with SASL).
// Default: no TLS; nil turns it off again. security.TLSFiles.Config builds c
// from PEM files. c is cloned at every dial and must not be changed after
// New. A broker certificate that does not verify, or a client certificate
// the brokers refuse, makes Run fail at start with ErrConfig.
func TLS(c *tls.Config) Opt { return opt{func(cfg *cfg) { cfg.tls = c }} }

// SASL makes the runner's Kafka clients authenticate with m (Kafka's
// sasl.mechanism): franz-go's plain, scram, oauth or aws mechanism, or
// security.SASL's. Default: none; nil turns it off again. Credentials the
// brokers refuse make Run fail at start with ErrConfig. The principal needs
// Read on the input topics and on the consumer group <app>-<name>, nothing
// else (docs/security.md); without one of them Run returns ErrConfig
// naming it.
func SASL(m sasl.Mechanism) Opt { return opt{func(cfg *cfg) { cfg.sasl = m }} }

// KafkaOptions appends franz-go client options to the runner's client,
// after its own (so they win), for settings the runner does not cover. Options that change
// the isolation level, turn on auto-commit, or replace the offset or
// rebalance callbacks void the guarantee.
func KafkaOptions(opts ...kgo.Opt) Opt {
	return opt{func(c *cfg) { c.kgoOpts = append(c.kgoOpts, opts...) }}
}

// batchTime is the longest a cycle can hold rebalances back: the commit
// interval, every write attempt, and the pauses between attempts (see
// session.write).
func (c *cfg) batchTime() time.Duration {
	n := c.writeAttempts
	if n > 1000 || c.writeTimeout > 24*time.Hour || c.commitInterval > 24*time.Hour {
		return math.MaxInt64 // no rebalance timeout is that long; avoids overflow
	}
	return c.commitInterval + time.Duration(n)*c.writeTimeout + time.Duration(n*(n-1)/2)*retryPause(1)
}

// retryPause is the pause after the attempt-th failed write.
func retryPause(attempt int) time.Duration { return time.Duration(attempt) * 200 * time.Millisecond }

// validate checks every option and every cross-option rule.
func (c *cfg) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	errs = append(errs, kgox.Client{
		Pkg: "sink", Brokers: c.brokers, App: c.app, InstanceID: c.instanceID,
		Session: c.sessionTimeout, Rebalance: c.rebalanceTime, Heartbeat: c.heartbeat,
		Logger: c.logger,
	}.Check()...)
	if err := kgox.CheckName("name", c.name); err != nil {
		errs = append(errs, err)
	}
	if len(c.topics) == 0 {
		bad("no input topics: set sink.Topics")
	}
	seen := map[string]bool{}
	for _, t := range c.topics {
		if t == "" {
			bad("empty topic name in sink.Topics")
		} else if seen[t] {
			bad("topic %q given twice in sink.Topics", t)
		}
		seen[t] = true
	}
	if c.commitInterval <= 0 {
		bad("commit interval %v must be positive", c.commitInterval)
	}
	if c.maxRecords <= 0 {
		bad("max records per batch %d must be positive", c.maxRecords)
	}
	if c.writeTimeout <= 0 {
		bad("write timeout %v must be positive", c.writeTimeout)
	}
	if c.writeAttempts <= 0 {
		bad("write attempts %d must be at least 1", c.writeAttempts)
	}
	if c.commitInterval > 0 && c.writeTimeout > 0 && c.writeAttempts > 0 {
		if d := c.batchTime(); d >= c.rebalanceTime {
			bad("a batch may take %v (commit interval %v, then %d write attempts of up to %v each and the pauses between them), not below the rebalance timeout %v, and a rebalance waits for the running batch: lower sink.WriteAttempts or sink.WriteTimeout (or sink.CommitInterval), or raise sink.RebalanceTimeout",
				d, c.commitInterval, c.writeAttempts, c.writeTimeout, c.rebalanceTime)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
}
