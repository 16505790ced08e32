package processor

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sluicehq/sluice/internal/kgox"
)

// Guarantee is a stage's delivery guarantee, as the Kafka documentation
// describes them.
type Guarantee int

const (
	// ExactlyOnce (the default) commits a stage's state changes (as
	// changelog records), its consumed input offsets and its outputs in one
	// Kafka transaction: an input record's effects are all visible to
	// read_committed readers, or none are.
	ExactlyOnce Guarantee = iota
	// AtLeastOnce commits input offsets only after the outputs and changelog
	// records were acknowledged: after a crash records may be processed twice,
	// never lost.
	AtLeastOnce
	// AtMostOnce commits input offsets before processing: after a crash
	// records may be lost, never processed twice.
	AtMostOnce
)

// String returns the flag form of g: "exactly-once", "at-least-once" or
// "at-most-once".
func (g Guarantee) String() string {
	switch g {
	case ExactlyOnce:
		return "exactly-once"
	case AtLeastOnce:
		return "at-least-once"
	case AtMostOnce:
		return "at-most-once"
	}
	return fmt.Sprintf("Guarantee(%d)", int(g))
}

// ParseGuarantee parses the flag form of a guarantee ("exactly-once",
// "at-least-once", "at-most-once").
func ParseGuarantee(s string) (Guarantee, error) {
	for _, g := range []Guarantee{ExactlyOnce, AtLeastOnce, AtMostOnce} {
		if s == g.String() {
			return g, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown guarantee %q: use exactly-once, at-least-once or at-most-once", ErrConfig, s)
}

// Policy decides what happens to a record that cannot be processed: its key
// or value does not decode, the user's function returns an error or panics,
// or an output it produces is larger than the producer may send.
type Policy int

const (
	// Fail (the default) stops the stage with a *RecordError naming the
	// record's topic, partition and offset. Nothing past the record is
	// committed; the open transaction is aborted.
	Fail Policy = iota
	// Skip counts and logs the record and goes on. The record's offset is
	// committed with the rest of the transaction; none of its effects are.
	Skip
	// DeadLetter produces the record's original key, value and headers,
	// plus headers naming the error, stage, topic, partition and offset
	// (sluice.error, sluice.stage, sluice.topic, sluice.partition,
	// sluice.offset), to the dead-letter topic (DeadLetterTopic, default
	// <app>-dlq) in the same transaction as the rest of the cycle, counts it
	// and goes on. None of the record's other effects are kept.
	DeadLetter
)

// String returns "fail", "skip" or "dead-letter".
func (p Policy) String() string {
	switch p {
	case Fail:
		return "fail"
	case Skip:
		return "skip"
	case DeadLetter:
		return "dead-letter"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy parses "fail", "skip" or "dead-letter".
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{Fail, Skip, DeadLetter} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown error policy %q: use fail, skip or dead-letter", ErrConfig, s)
}

// Acks is how many replicas must acknowledge a produced record (Kafka's
// acks).
type Acks int

const (
	// AllAcks waits for every in-sync replica (acks=all). Required by the
	// idempotent producer, and so by ExactlyOnce and (by default)
	// AtLeastOnce.
	AllAcks Acks = iota
	// LeaderAck waits for the partition leader only (acks=1): a record
	// acknowledged by a leader that then fails may be lost.
	LeaderAck
	// NoAck does not wait at all (acks=0): records may be lost without the
	// producer knowing.
	NoAck
)

// String returns Kafka's name of the setting: "all", "1" or "0".
func (a Acks) String() string {
	switch a {
	case AllAcks:
		return "all"
	case LeaderAck:
		return "1"
	case NoAck:
		return "0"
	}
	return fmt.Sprintf("Acks(%d)", int(a))
}

// Opt configures a Processor. As in franz-go (kgo.Opt), and in sink,
// streamtest and the runtime's state: an option is a value named after the
// setting it sets (Logger, CommitInterval), with "With" only where that name
// is taken by a type (WithGuarantee, as Guarantee is the type).
type Opt interface {
	apply(*cfg)
}

// StageOpt is an option that may also be set for a single stage with
// ForStage; set with New directly it is the topology-wide default.
type StageOpt interface {
	Opt
	applyStage(*stageCfg)
}

type opt struct{ fn func(*cfg) }

func (o opt) apply(c *cfg) { o.fn(c) }

type stageOpt struct{ fn func(*stageCfg) }

func (o stageOpt) apply(c *cfg)           { o.fn(&c.stageDefaults) }
func (o stageOpt) applyStage(c *stageCfg) { o.fn(c) }

// stageCfg holds what may differ between stages.
type stageCfg struct {
	guarantee      Guarantee
	policy         Policy
	commitInterval time.Duration
	maxRecords     int
	maxTaskIdle    time.Duration // see MaxTaskIdle (order.go)

	// Producer settings; nil means the guarantee's default.
	acks        *Acks
	idempotence *bool
	retries     *int
	linger      *time.Duration
}

// producer returns the effective producer settings of the stage: the
// user's, or the defaults of its guarantee.
func (c stageCfg) producer() (acks Acks, idempotent bool, retries int, linger time.Duration) {
	acks, idempotent, retries = AllAcks, true, -1 // -1: franz-go's default, retry until the delivery timeout
	linger = max(0, min(defaultLinger, c.commitInterval/2))
	if c.guarantee == AtMostOnce {
		acks, idempotent, retries = LeaderAck, false, 0
	}
	if c.acks != nil {
		acks = *c.acks
	}
	if c.idempotence != nil {
		idempotent = *c.idempotence
	}
	if c.retries != nil {
		retries = *c.retries
	}
	if c.linger != nil {
		linger = *c.linger
	}
	return acks, idempotent, retries, linger
}

type cfg struct {
	brokers        []string
	app            string
	stateDir       string
	instanceID     string
	txnTimeout     time.Duration
	sessionTimeout time.Duration
	rebalanceTime  time.Duration
	heartbeat      time.Duration
	dialTimeout    time.Duration
	startupTimeout time.Duration
	maxRecordBytes int
	stateCache     int64 // see StateCacheSize
	rollingRestart bool
	purgeInterval  time.Duration
	dlq            string
	// replication: see ReplicationFactor (-1: the brokers' default).
	replication int
	// allowChangelogRecreate: see AllowChangelogRecreate.
	allowChangelogRecreate bool
	logger                 *slog.Logger
	tls                    *tls.Config    // see TLS
	sasl                   sasl.Mechanism // see SASL
	kgoOpts                []kgo.Opt

	// Operations (prom.go, lifecycle.go, admin.go).
	registerer      prometheus.Registerer
	stateListener   func(old, new State)
	restoreListener RestoreListener
	adminAddr       string
	stallTimeout    time.Duration

	stageDefaults stageCfg
	stages        map[string][]StageOpt
}

func defaultCfg() cfg {
	return cfg{
		txnTimeout:     10 * time.Second,
		sessionTimeout: 45 * time.Second,
		rebalanceTime:  60 * time.Second,
		heartbeat:      3 * time.Second,
		dialTimeout:    10 * time.Second,
		startupTimeout: 30 * time.Second,
		purgeInterval:  30 * time.Second,
		replication:    -1,
		stallTimeout:   5 * time.Minute,
		maxRecordBytes: 1000012, // Kafka's default message.max.bytes and franz-go's default batch size
		stateCache:     8 << 20, // Pebble's default
		logger:         slog.New(slog.DiscardHandler),
		stageDefaults: stageCfg{
			guarantee:      ExactlyOnce,
			policy:         Fail,
			commitInterval: 100 * time.Millisecond,
			maxRecords:     50000,
			maxTaskIdle:    defaultMaxTaskIdle,
		},
		stages: map[string][]StageOpt{},
	}
}

// Brokers sets the seed brokers ("host:port"). Required. Maps to Kafka's
// bootstrap.servers.
func Brokers(brokers ...string) Opt {
	return opt{func(c *cfg) { c.brokers = append(c.brokers, brokers...) }}
}

// ApplicationID names the application. Required. It prefixes every consumer
// group (<app>-<stage>), transactional id (<app>-<stage>-<instance>) and
// internal topic (<app>-<name>-repartition, <app>-<store>-changelog), like
// Kafka Streams' application.id. Changing it starts the application afresh.
func ApplicationID(app string) Opt { return opt{func(c *cfg) { c.app = app }} }

// StateDir sets the directory holding the instance's Pebble state. Required.
// Only one process may use a state directory at a time; the second fails with
// ErrStateLocked. A wiped directory is rebuilt from the changelogs.
func StateDir(dir string) Opt { return opt{func(c *cfg) { c.stateDir = dir }} }

// InstanceID sets the identity of this process: it names the transactional
// ids and is the static group membership id (Kafka's group.instance.id), so a
// restarted instance takes its partitions back at once instead of after a
// session timeout. Two running processes must never share one. Default: the
// host name and a hash of the state directory's absolute path, so that it
// survives a wiped directory.
func InstanceID(id string) Opt { return opt{func(c *cfg) { c.instanceID = id }} }

// TransactionTimeout sets the transaction timeout (Kafka's
// transaction.timeout.ms). Default 10s. It bounds how long a zombie's open
// transaction (one whose process is alive but cut off) can hold back
// read_committed readers and restores; a restarted instance settles its own
// predecessor's transaction at once. It must be longer than the commit
// interval, and the broker's transaction.max.timeout.ms must allow it.
func TransactionTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.txnTimeout = d }} }

// SessionTimeout sets the group session timeout (Kafka's session.timeout.ms).
// Default 45s. A crashed instance that does not come back keeps its
// partitions this long.
func SessionTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.sessionTimeout = d }} }

// RebalanceTimeout sets the group rebalance timeout (Kafka's
// max.poll.interval.ms for the join). Default 60s.
func RebalanceTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.rebalanceTime = d }} }

// HeartbeatInterval sets the group heartbeat interval (Kafka's
// heartbeat.interval.ms). Default 3s.
func HeartbeatInterval(d time.Duration) Opt { return opt{func(c *cfg) { c.heartbeat = d }} }

// StartupTimeout bounds how long Run's first contact with the brokers and the
// checks and creation of topics may take before Run fails with
// ErrUnreachable. Default 30s.
func StartupTimeout(d time.Duration) Opt { return opt{func(c *cfg) { c.startupTimeout = d }} }

// MaxRecordBytes is the largest record (key, value and headers) the processor
// will produce; a larger one is handed to the stage's error policy instead of
// failing the transaction. Default 1000012, Kafka's default
// max.message.bytes. Raise it only with the topics' max.message.bytes.
func MaxRecordBytes(n int) Opt { return opt{func(c *cfg) { c.maxRecordBytes = n }} }

// StateCacheSize sets the size in bytes of the block cache of the instance's
// Pebble state (Pebble's Options.CacheSize), shared by the stores of every
// task and the copies of every global table. Default 8 MiB, Pebble's own
// default. A larger cache serves more store reads from memory, which helps
// when the stores' working set is larger than the cache and the operating
// system's page cache; it is memory the process holds on top of Pebble's
// memtables (32 MiB each, up to two). New refuses a negative size.
func StateCacheSize(bytes int64) Opt { return opt{func(c *cfg) { c.stateCache = bytes }} }

// RollingRestart keeps the group membership on shutdown (no LeaveGroup), so
// that an instance restarted within the session timeout gets its partitions
// back without a rebalance. Default false: a stopping instance leaves its
// groups and its partitions move at once.
func RollingRestart() Opt { return opt{func(c *cfg) { c.rollingRestart = true }} }

// PurgeInterval sets how often the records of repartition topics that the
// reading stage has committed are deleted (DeleteRecords). Default 30s; 0
// turns purging off (then set a retention on the repartition topics).
func PurgeInterval(d time.Duration) Opt { return opt{func(c *cfg) { c.purgeInterval = d }} }

// ReplicationFactor sets the replication factor of the internal topics the
// processor creates (changelogs, repartition topics, the dead-letter topic;
// Kafka Streams' replication.factor). Default: the brokers'
// default.replication.factor (CreateTopics asks for -1), which on a
// production cluster should be 3 with min.insync.replicas=2; -1 asks for
// that default explicitly. Topics that exist already keep theirs. New
// refuses 0 and factors below -1; a factor above
// the number of brokers fails Run with ErrConfig. When the default gives an
// internal topic a single replica on a cluster of several brokers, Run logs
// a warning (losing that broker loses the topic's data): set the brokers'
// default.replication.factor, or this.
func ReplicationFactor(n int) Opt { return opt{func(c *cfg) { c.replication = n }} }

// Logger sets the structured logger. Default: discard.
func Logger(l *slog.Logger) Opt { return opt{func(c *cfg) { c.logger = l }} }

// KafkaOptions appends franz-go client options to every client the processor
// creates, after its own (so they win), but for the options the protocol
// rests on, which come after them and cannot be replaced: read_committed
// fetches, the consumers' offset reset (a stage's to its input's start, a
// restore's to none), the stage's group balancer, and its logger (which
// wraps one given here). For settings sluice does not cover (TLS and SASL
// have options of their own: TLS, SASL);
// other options that break the protocol (auto-commit) void the guarantees. A custom decompressor
// (kgo.WithDecompressor) must return fresh memory for every batch: sluice
// hands fetched keys and values to the topology without copying them.
func KafkaOptions(opts ...kgo.Opt) Opt {
	return opt{func(c *cfg) { c.kgoOpts = append(c.kgoOpts, opts...) }}
}

// WithGuarantee sets the delivery guarantee. Default ExactlyOnce.
func WithGuarantee(g Guarantee) StageOpt {
	return stageOpt{func(c *stageCfg) { c.guarantee = g }}
}

// ErrorPolicy sets what happens to a record that cannot be processed.
// Default Fail.
func ErrorPolicy(p Policy) StageOpt { return stageOpt{func(c *stageCfg) { c.policy = p }} }

// CommitInterval sets how long a stage gathers records into one transaction
// before committing it (Kafka Streams' commit.interval.ms). Default 100ms.
// Shorter means lower latency and more transactions; longer means higher
// throughput.
//
// A stage that keeps up with live input (its polls waited for records at
// least a tenth of its last gather) ends a transaction one interval after
// the previous one stopped gathering, so the time a transaction takes to end
// (flush, offset commit, EndTxn, apply) counts toward the next interval, as
// in Kafka Streams; and it ends sooner when a burst of input is processed
// and no record came for a twentieth of the interval (at least 1 ms, at most
// 20 ms), but not before half an interval after the previous gather: a stage
// fed by another stage gets its input in bursts, one per upstream commit,
// and a trickle of input needs no full interval. A stage working through a
// backlog gathers for a whole interval from the start of each cycle, which
// spreads each transaction's fixed cost over more records.
func CommitInterval(d time.Duration) StageOpt {
	return stageOpt{func(c *stageCfg) { c.commitInterval = d }}
}

// MaxRecordsPerTransaction caps the input records of one transaction; the
// cap is enforced at the poll, so a transaction commits the offsets of
// exactly the records it processed. Default 50000. It bounds the memory of a
// cycle's write set and the work an aborted transaction repeats; at low rates
// the commit interval ends a transaction first. With a backlog, a smaller cap
// means more, shorter transactions, and each one's end (flush, offset commit,
// EndTxn) stops the stage for a broker round trip.
func MaxRecordsPerTransaction(n int) StageOpt {
	return stageOpt{func(c *stageCfg) { c.maxRecords = n }}
}

// ProducerAcks sets how many replicas must acknowledge each produced record
// (Kafka's acks). Default AllAcks, or LeaderAck for AtMostOnce. ExactlyOnce
// and the idempotent producer need AllAcks; AtLeastOnce refuses NoAck.
//
// AtLeastOnce accepts LeaderAck (with Idempotence(false)), as Kafka Streams
// accepts acks=1 under at_least_once, but then it no longer promises that
// nothing is lost: a record the leader acknowledged and lost in a leader
// change before any follower copied it is gone, while the input offset that
// produced it is committed; a lost changelog record leaves a restored store
// without that update. New logs a warning for this combination.
func ProducerAcks(a Acks) StageOpt { return stageOpt{func(c *stageCfg) { c.acks = &a }} }

// Idempotence turns the idempotent producer on or off (Kafka's
// enable.idempotence): with it, a retried produce is written once. Default
// on, off for AtMostOnce. ExactlyOnce needs it on.
func Idempotence(on bool) StageOpt { return stageOpt{func(c *stageCfg) { c.idempotence = &on }} }

// ProducerRetries caps how often a failed produce is retried (Kafka's
// retries); a negative value means franz-go's default: retry until the
// delivery timeout. Default -1, or 0 for AtMostOnce. With retries, a produce
// that failed mid-way is retried, which without idempotence may write the
// record twice.
func ProducerRetries(n int) StageOpt { return stageOpt{func(c *stageCfg) { c.retries = &n }} }

// defaultLinger is Kafka's linger.ms default since Kafka 4.0 (KIP-1030).
const defaultLinger = 5 * time.Millisecond

// ProducerLinger sets how long the producer waits to fill a batch (Kafka's
// linger.ms). Default 5 ms, Kafka's default since 4.0 (KIP-1030), or half of
// the commit interval if that is shorter: fewer, larger produce requests cost
// the broker and the client less CPU than one per record, and a cycle's
// flush sends what is left without waiting for the linger.
func ProducerLinger(d time.Duration) StageOpt { return stageOpt{func(c *stageCfg) { c.linger = &d }} }

// DeadLetterTopic names the topic the DeadLetter policy writes to. Default
// <app>-dlq. The processor creates it (one partition) when it is missing and
// a stage uses DeadLetter.
func DeadLetterTopic(topic string) Opt { return opt{func(c *cfg) { c.dlq = topic }} }

// ForStage applies stage options to the named stage only, over the
// topology-wide defaults.
func ForStage(stage string, opts ...StageOpt) Opt {
	return opt{func(c *cfg) { c.stages[stage] = append(c.stages[stage], opts...) }}
}

// stageConfig returns the effective configuration of a stage.
func (c *cfg) stageConfig(stage string) stageCfg {
	sc := c.stageDefaults
	for _, o := range c.stages[stage] {
		o.applyStage(&sc)
	}
	return sc
}

// validate checks every option and every cross-option rule. It fills in
// derived defaults (the instance id).
func (c *cfg) validate(stageNames []string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if c.dlq != "" {
		if err := kgox.CheckName("dead-letter topic", c.dlq); err != nil {
			errs = append(errs, err)
		}
	}
	if c.stateDir == "" {
		bad("no state directory: set processor.StateDir")
	} else if abs, err := filepath.Abs(c.stateDir); err != nil {
		bad("state directory %q: %v", c.stateDir, err)
	} else {
		c.stateDir = abs
	}
	if c.dlq == "" && c.app != "" {
		c.dlq = c.app + "-dlq"
	}
	if c.instanceID == "" && c.stateDir != "" {
		c.instanceID = defaultInstanceID(c.stateDir)
	}
	errs = append(errs, kgox.Client{
		Pkg: "processor", Brokers: c.brokers, App: c.app, InstanceID: c.instanceID,
		Session: c.sessionTimeout, Rebalance: c.rebalanceTime, Heartbeat: c.heartbeat,
		Logger: c.logger,
	}.Check()...)
	if c.txnTimeout < time.Second {
		bad("transaction timeout %v is below 1s", c.txnTimeout)
	}
	if c.maxRecordBytes < 1024 {
		bad("max record bytes %d is below 1024", c.maxRecordBytes)
	}
	if c.replication != -1 && (c.replication < 1 || c.replication > math.MaxInt16) {
		bad("replication factor %d is out of range: use processor.ReplicationFactor with 1 or more (at most the number of brokers), or -1 (the default) for the brokers' default.replication.factor", c.replication)
	}
	if c.stateCache < 0 {
		bad("state cache size %d is negative: use processor.StateCacheSize with 0 or more bytes", c.stateCache)
	}
	known := map[string]bool{}
	for _, n := range stageNames {
		known[n] = true
	}
	for name := range c.stages {
		if !known[name] {
			bad("ForStage(%q): the topology has no such stage (stages: %s)", name, strings.Join(stageNames, ", "))
		}
	}
	errs = append(errs, c.checkStage("topology default", c.stageDefaults)...)
	for _, n := range stageNames {
		if len(c.stages[n]) > 0 {
			errs = append(errs, c.checkStage("stage "+n, c.stageConfig(n))...)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
}

// checkStage checks the effective configuration sc of a stage (where names
// it in the messages: "topology default", "stage <name>"), and logs a
// warning for a weakened but allowed one.
func (c *cfg) checkStage(where string, sc stageCfg) []error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	switch sc.guarantee {
	case ExactlyOnce, AtLeastOnce, AtMostOnce:
	default:
		bad("%s: unknown guarantee %d", where, int(sc.guarantee))
	}
	if sc.policy != Fail && sc.policy != Skip && sc.policy != DeadLetter {
		bad("%s: unknown error policy %d", where, int(sc.policy))
	}
	acks, idem, _, linger := sc.producer()
	if acks < AllAcks || acks > NoAck {
		bad("%s: unknown acks %d", where, int(acks))
	}
	if sc.guarantee == ExactlyOnce && !idem {
		bad("%s: exactly-once needs the idempotent producer: remove processor.Idempotence(false), or choose processor.AtLeastOnce or processor.AtMostOnce", where)
	}
	if idem && acks != AllAcks {
		bad("%s: the idempotent producer needs acks=all: use processor.ProducerAcks(processor.AllAcks), or processor.Idempotence(false) (not with exactly-once)", where)
	}
	if sc.guarantee == AtLeastOnce && acks == NoAck {
		bad("%s: at-least-once cannot know a record was written with acks=0: use processor.AllAcks or processor.LeaderAck", where)
	}
	if sc.guarantee == AtLeastOnce && acks == LeaderAck && c.logger != nil {
		// Allowed, as Kafka Streams allows acks=1 under at_least_once,
		// but it weakens the guarantee: say so once, at New, rather
		// than only in the documentation.
		c.logger.Warn(where+": at-least-once with processor.ProducerAcks(processor.LeaderAck) can lose acknowledged records: "+
			"a record (output or changelog) the partition leader acknowledged but had not replicated is lost when the leader fails, "+
			"while the input offset that produced it is committed; use processor.ProducerAcks(processor.AllAcks) with the idempotent producer (the default) to lose nothing",
			"guarantee", sc.guarantee.String(), "acks", "1", "idempotence", idem)
	}
	if linger < 0 || linger >= sc.commitInterval && sc.commitInterval > 0 {
		bad("%s: producer linger %v must be at least 0 and below the commit interval %v; lower processor.ProducerLinger or raise processor.CommitInterval", where, linger, sc.commitInterval)
	}
	if sc.commitInterval <= 0 {
		bad("%s: commit interval %v must be positive", where, sc.commitInterval)
	} else if sc.guarantee == ExactlyOnce && sc.commitInterval >= c.txnTimeout {
		bad("%s: commit interval %v must be below the transaction timeout %v: raise processor.TransactionTimeout or lower processor.CommitInterval", where, sc.commitInterval, c.txnTimeout)
	}
	if sc.maxRecords <= 0 {
		bad("%s: max records per transaction %d must be positive", where, sc.maxRecords)
	}
	return errs
}

// defaultInstanceID derives an instance id from the host name and the state
// directory's absolute path (not its contents, so a wiped directory keeps its
// identity).
func defaultInstanceID(stateDir string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var clean strings.Builder
	for _, r := range host {
		if kgox.ValidName(string(r)) {
			clean.WriteRune(r)
		} else {
			clean.WriteByte('-')
		}
	}
	return fmt.Sprintf("%s-%08x", clean.String(), fnv32(stateDir))
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
