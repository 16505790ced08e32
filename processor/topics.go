package processor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/sluicehq/sluice/internal/checkpoint"
	"github.com/sluicehq/sluice/internal/topology"
)

// prepareTopics checks the topology's topics against the cluster and creates
// the internal ones: it reads the metadata of every topic (topicMetadata),
// creates or checks the internal topics with the counts of the topology's
// partition plan (ensureTopics), and then reads what restores need to know
// of the changelogs (learnChangelogs). Every configuration problem is
// reported at once, wrapping ErrConfig, with what to change.
func (p *Processor) prepareTopics(ctx context.Context, adm *kadm.Client) error {
	md, err := p.topicMetadata(ctx, adm)
	if err != nil {
		return err
	}
	created, err := p.ensureTopics(ctx, adm, md)
	if err != nil {
		return err
	}
	return p.learnChangelogs(ctx, adm, created)
}

// topicMetadata reads the metadata of every topic the processor uses. A
// topic that does not exist is in it with kerr.UnknownTopicOrPartition; any
// other error of a topic fails the call.
func (p *Processor) topicMetadata(ctx context.Context, adm *kadm.Client) (kadm.Metadata, error) {
	names := map[string]bool{}
	for _, st := range p.stages {
		for _, t := range st.inputs {
			names[t.name] = true
		}
		for _, t := range st.outputs {
			names[t.name] = true
		}
		for _, s := range st.stores {
			names[s.topic] = true
		}
	}
	for _, g := range p.globals {
		names[g.topic] = true
	}
	list := make([]string, 0, len(names))
	names[p.cfg.dlq] = true
	for n := range names {
		list = append(list, n)
	}
	md, err := adm.Metadata(ctx, list...)
	if errors.Is(err, kerr.TopicAuthorizationFailed) {
		return kadm.Metadata{}, p.refusedTopics(ctx, adm, list, err)
	}
	if err != nil {
		return kadm.Metadata{}, fmt.Errorf("reading topic metadata: %w", err)
	}
	for t, d := range md.Topics {
		if d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return kadm.Metadata{}, fmt.Errorf("reading metadata of topic %s: %w", t, d.Err)
		}
	}
	return md, nil
}

// ensureTopics checks the topology's partition plan against md, sets every
// stage's partition count, and creates the internal topics (repartition,
// changelog, dead-letter) with the plan's counts, or checks the partition
// counts and settings of the existing ones. It returns the ids of the
// topics it created, or every problem at once, wrapping ErrConfig.
func (p *Processor) ensureTopics(ctx context.Context, adm *kadm.Client, md kadm.Metadata) (map[string][16]byte, error) {
	exists := func(t string) (kadm.TopicDetail, bool) { return topicIn(md, t) }
	specs, errs := p.planInternal(md)
	// existing are the internal topics that existed before this start:
	// their settings are checked below (checkInternalConfigs).
	existing := map[string]internalKind{}
	// created are the ids of the internal topics this start created.
	created := map[string][16]byte{}
	for _, sp := range specs {
		if _, ok := exists(sp.topic); ok {
			existing[sp.topic] = sp.kind
		}
		if err := p.ensureTopic(ctx, adm, md, created, sp.topic, sp.kind, sp.st, sp.partitions, sp.configs); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, p.checkGlobalTopics(md)...)
	if len(errs) == 0 {
		cerrs, err := checkInternalConfigs(ctx, adm, p.cfg.logger, existing)
		if err != nil {
			return nil, err
		}
		errs = append(errs, cerrs...)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return created, nil
}

// topicIn returns topic's metadata in md, and whether it exists there
// without error.
func topicIn(md kadm.Metadata, topic string) (kadm.TopicDetail, bool) {
	d, ok := md.Topics[topic]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return kadm.TopicDetail{}, false
	}
	return d, d.Err == nil
}

// internalSpec is an internal topic as the runtime creates it.
type internalSpec struct {
	topic      string
	kind       internalKind
	st         *stage // the stage writing it; nil for the dead-letter topic
	partitions int32
	configs    map[string]*string
}

// planInternal applies the topology's partition plan (its rules, with the
// partition counts of the topics in md) and returns the internal topics the
// processor needs: the repartition topics and changelogs with the plan's
// counts, and the dead-letter topic when a stage dead-letters and it does
// not exist yet (any partition count will do). It sets every stage's
// partition count, and returns the plan's errors.
func (p *Processor) planInternal(md kadm.Metadata) ([]internalSpec, []error) {
	exists := func(t string) (kadm.TopicDetail, bool) { return topicIn(md, t) }
	plan, err := topology.Of(p.topo).PlanPartitions(p.cfg.app, func(topic string) (int, bool) {
		d, ok := exists(topic)
		return len(d.Partitions), ok
	})
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	var specs []internalSpec
	for i, st := range p.stages {
		n := int32(plan.Stages[i])
		if n == 0 {
			continue // the plan's errors say why
		}
		st.partitions = n
		for _, out := range st.outputs {
			if out.internal {
				specs = append(specs, internalSpec{out.name, repartitionTopic, st, int32(plan.Internal[out.name]), repartitionConfigs()})
			}
		}
		for _, s := range st.stores {
			specs = append(specs, internalSpec{s.topic, changelogTopic, st, n, changelogConfigs()})
		}
	}
	if slices.ContainsFunc(p.stages, func(st *stage) bool { return st.cfg.policy == DeadLetter }) {
		if _, ok := exists(p.cfg.dlq); !ok {
			specs = append(specs, internalSpec{p.cfg.dlq, deadLetterTopic, nil, 1, nil})
		}
	}
	return specs, errs
}

// learnChangelogs reads the topic ids and delete.retention.ms of the
// changelogs into the stages' stores, and refuses changelogs recreated
// since the local state was built (unless AllowChangelogRecreate). Each
// restore reads them again (a changelog may be recreated while the
// application runs); these are for the checkpoints of the first cycles and
// for the check of recreated changelogs. created holds the ids of the topics
// created a moment ago, which the client's cached metadata may miss.
func (p *Processor) learnChangelogs(ctx context.Context, adm *kadm.Client, created map[string][16]byte) error {
	var changelogs []string
	for _, st := range p.stages {
		for _, s := range st.stores {
			changelogs = append(changelogs, s.topic)
		}
	}
	if len(changelogs) == 0 {
		return nil
	}
	logs, err := describeChangelogs(ctx, adm, p.cfg.logger, changelogs, created)
	if err != nil {
		return err
	}
	for _, t := range changelogs {
		if err := logs[t].configErr; errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
			// Refused now, refused at every start: fail at the first
			// one, where the changelogs were just created, not at the
			// first restart (checkInternalConfigs).
			return describeConfigsError([]string{t}, err)
		}
	}
	for _, st := range p.stages {
		for _, s := range st.stores {
			s.topicID = logs[s.topic].id
			s.deleteRetention = logs[s.topic].deleteRetention
		}
	}
	allow := p.cfg.allowChangelogRecreate
	for _, st := range p.stages {
		if err := st.checkRecreatedChangelogs(ctx, adm, logs, allow); err != nil {
			return err
		}
	}
	return nil
}

// internalKind is the role of an internal topic, for its checks and
// messages.
type internalKind int

const (
	repartitionTopic internalKind = iota // written and read by stages; also declared loops
	changelogTopic                       // a state store's changelog
	deadLetterTopic                      // the DeadLetter policy's topic
)

// repartitionConfigs are the settings sluice creates repartition topics
// with: records are deleted only by the purge (DeleteRecords up to what the
// downstream stage committed), never by time, size or compaction.
func repartitionConfigs() map[string]*string {
	return map[string]*string{
		"cleanup.policy": ptr("delete"),
		"retention.ms":   ptr("-1"),
	}
}

// changelogConfigs are the settings sluice creates changelogs with: the
// changelog is the store's state, so compaction (the latest value of every
// key) and no deletion by time.
func changelogConfigs() map[string]*string {
	return map[string]*string{
		"cleanup.policy": ptr("compact"),
	}
}

// ensureTopic creates an internal topic, or checks the partition count of an
// existing one. st is the stage that writes it (nil for the dead-letter
// topic). The id of a topic it creates goes to created.
func (p *Processor) ensureTopic(ctx context.Context, adm *kadm.Client, md kadm.Metadata, created map[string][16]byte, topic string, kind internalKind, st *stage, partitions int32, configs map[string]*string) error {
	if d, ok := md.Topics[topic]; ok && d.Err == nil {
		if got := int32(len(d.Partitions)); got != partitions {
			return partitionMismatch(p.cfg.app, topic, kind, st, got, partitions)
		}
		if pd, ok := d.Partitions[0]; ok {
			p.warnSingleReplica(md, topic, len(pd.Replicas))
		}
		return nil
	}
	rf := int16(p.cfg.replication)
	resp, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.InvalidReplicationFactor) && rf > 0 {
		return fmt.Errorf("creating internal topic %s with replication factor %d (processor.ReplicationFactor) on a cluster of %d brokers: %w: use at most %d, or leave it unset for the brokers' default.replication.factor",
			topic, rf, len(md.Brokers), err, len(md.Brokers))
	}
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		return fmt.Errorf("creating internal topic %s: %w: grant the application's principal Create on the topics prefixed %q (docs/security.md), or create the internal topics beforehand", topic, err, p.cfg.app+"-")
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating internal topic %s: %w", topic, err)
	}
	if err == nil {
		created[topic] = resp.ID
		p.cfg.logger.Info("created internal topic", "topic", topic, "partitions", partitions, "replication_factor", resp.ReplicationFactor)
		if rf < 0 {
			p.warnSingleReplica(md, topic, int(resp.ReplicationFactor))
		}
	} else {
		p.cfg.logger.Info("internal topic created by another instance", "topic", topic, "partitions", partitions)
	}
	return nil
}

// warnSingleReplica logs a warning when an internal topic has one replica
// on a cluster of several brokers (not asked for with ReplicationFactor):
// losing that broker loses the topic's data, a changelog's store state or
// a repartition topic's records. replicas is the topic's replication
// factor; 0 (unknown, from a broker too old to say) warns of nothing.
func (p *Processor) warnSingleReplica(md kadm.Metadata, topic string, replicas int) {
	if replicas != 1 || len(md.Brokers) < 2 || p.cfg.replication == 1 {
		return
	}
	p.cfg.logger.Warn("internal topic has a single replica on a cluster of several brokers: losing that broker loses its data; "+
		"set the brokers' default.replication.factor (3, with min.insync.replicas=2) or processor.ReplicationFactor, and raise this topic's with kafka-reassign-partitions.sh",
		"topic", topic, "replication_factor", replicas, "brokers", len(md.Brokers))
}

// partitionMismatch is the error of an existing internal topic whose
// partition count differs from what its writing stage needs. What to do
// depends on the topic: deleting a changelog loses the store's state while
// the stage's input offsets stay committed (aggregates would restart from
// zero), so its message never suggests that.
func partitionMismatch(app, topic string, kind internalKind, st *stage, got, want int32) error {
	switch kind {
	case changelogTopic:
		return fmt.Errorf("changelog topic %s has %d partitions but stage %s needs %d (one per input partition). "+
			"Do not delete the changelog: it holds the store's state, and the stage's input offsets stay committed in consumer group %s, "+
			"so the store would restart empty and aggregates from zero. Instead either give the stage's input topics back %d partitions, "+
			"or reset the application (stop every instance, delete consumer group %s so its inputs are read again from the start, "+
			"then delete this changelog), or migrate the state to a new application id",
			topic, got, st.name, want, st.group, got, st.group)
	case repartitionTopic:
		return fmt.Errorf("repartition topic %s has %d partitions but stage %s writes %d. "+
			"Either give the stage's input topics back %d partitions (or set stream.Partitions), "+
			"or stop every instance of application %s, let nothing be left unread in %s, and delete it (sluice creates it again; records left in it are lost)",
			topic, got, st.name, want, got, app, topic)
	default:
		return fmt.Errorf("topic %s has %d partitions, want %d", topic, got, want)
	}
}

// checkInternalConfigs checks the settings of internal topics that existed
// before this start (sluice creates new ones right): a changelog must be
// compacted (cleanup.policy=compact: deletion by time or size alone would
// lose state; compact,delete is logged as a warning), and a repartition topic must keep its records until the purge
// (cleanup.policy=delete with retention.ms=-1: compaction would drop records
// by key, time retention records the downstream stage has not read). It
// returns one error per bad setting, naming the topic, the setting and the
// command that fixes it. Failing to read the settings is an error of its own
// (fail loudly at start: the checks cannot be skipped silently); it wraps
// ErrConfig when the broker refused (a missing DescribeConfigs ACL).
func checkInternalConfigs(ctx context.Context, adm *kadm.Client, log *slog.Logger, existing map[string]internalKind) ([]error, error) {
	var topics []string
	for t, k := range existing {
		if k != deadLetterTopic {
			topics = append(topics, t)
		}
	}
	if len(topics) == 0 {
		return nil, nil
	}
	slices.Sort(topics)
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return nil, describeConfigsError(topics, err)
	}
	var errs []error
	for _, t := range topics {
		rc, err := rcs.On(t, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return nil, describeConfigsError([]string{t}, err)
		}
		cfg := map[string]string{}
		for _, c := range rc.Configs {
			if c.Value != nil {
				cfg[c.Key] = *c.Value
			}
		}
		fix := func(setting string) string {
			return fmt.Sprintf("(kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config %s)", t, setting)
		}
		switch existing[t] {
		case changelogTopic:
			policies := strings.Split(cfg["cleanup.policy"], ",")
			if !slices.Contains(policies, "compact") {
				errs = append(errs, fmt.Errorf("changelog topic %s has cleanup.policy=%s: a changelog must be compacted, or records of the store's state are deleted by time or size; set cleanup.policy=compact %s",
					t, cfg["cleanup.policy"], fix("cleanup.policy=compact")))
			} else if slices.Contains(policies, "delete") && cfg["retention.ms"] != "-1" {
				// compact,delete (as Kafka Streams gives windowed
				// stores) may be deliberate: restores notice the
				// moved log start offset and rebuild.
				log.Warn("changelog is compacted but also deletes records by time: the store loses state older than retention.ms",
					"topic", t, "cleanup.policy", cfg["cleanup.policy"], "retention.ms", cfg["retention.ms"])
			}
		case repartitionTopic:
			if cfg["cleanup.policy"] != "delete" {
				errs = append(errs, fmt.Errorf("repartition topic %s has cleanup.policy=%s: compaction drops records by key before the downstream stage reads them; set cleanup.policy=delete %s",
					t, cfg["cleanup.policy"], fix("cleanup.policy=delete")))
			}
			if cfg["retention.ms"] != "-1" {
				errs = append(errs, fmt.Errorf("repartition topic %s has retention.ms=%s: records the downstream stage has not read yet would be deleted by time (sluice deletes what was read itself); set retention.ms=-1 %s",
					t, cfg["retention.ms"], fix("retention.ms=-1")))
			}
		}
	}
	return errs, nil
}

// describeConfigsError explains a failure to read topic settings.
func describeConfigsError(topics []string, err error) error {
	if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed) {
		return fmt.Errorf("%w: reading the settings of internal topics %v: %w: grant the application DescribeConfigs on them (sluice checks that changelogs are compacted and repartition topics keep their records)", ErrConfig, topics, err)
	}
	return fmt.Errorf("reading the settings of internal topics %v: %w", topics, err)
}

// metadataSettle is how long describeChangelogs asks again for a topic the
// metadata does not show yet.
const metadataSettle = 5 * time.Second

// logInfo is what a restore needs to know of a changelog topic besides its
// offsets.
type logInfo struct {
	id [16]byte
	// deleteRetention is how long compaction keeps tombstones, as
	// checkpoint.LogState.DeleteRetention (0: zero or unknown).
	deleteRetention time.Duration
	// configErr is why the topic's settings could not be read (then
	// deleteRetention is 0: restores fail closed), or nil.
	configErr error
}

// describeChangelogs reads the topic ids and the tombstone retention of
// changelog topics: one Metadata and one DescribeConfigs request. A topic
// that does not exist is an error (a changelog deleted while the
// application runs; the restore fails and the group retries it), unless
// created holds its id (a topic created a moment ago, which the client's
// cached metadata may not show yet). When the settings cannot be read, the
// retention stays 0 (unknown), so checkpoint.Plan rebuilds instead of
// trusting a checkpoint's age (fail closed), and the failure is logged: a
// rebuild costs a replay, a resume past a removed tombstone brings a deleted
// key back.
func describeChangelogs(ctx context.Context, adm *kadm.Client, log *slog.Logger, topics []string, created map[string][16]byte) (map[string]logInfo, error) {
	// A topic created a moment ago may be unknown to the broker that
	// answers for a few moments: ask again, for a bounded time, before
	// calling it missing.
	var md kadm.Metadata
	for deadline := time.Now().Add(metadataSettle); ; {
		var err error
		md, err = adm.Metadata(ctx, topics...)
		if err != nil {
			return nil, fmt.Errorf("reading changelog metadata: %w", err)
		}
		missing := false
		for _, t := range topics {
			if d, ok := md.Topics[t]; (!ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition)) && created[t] == [16]byte{} {
				missing = true
			}
		}
		if !missing || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	logs := make(map[string]logInfo, len(topics))
	for _, t := range topics {
		d, ok := md.Topics[t]
		if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			if id, ok := created[t]; ok {
				logs[t] = logInfo{id: id}
				continue
			}
			return nil, fmt.Errorf("changelog topic %s does not exist: was it deleted while the application runs? Restarting every instance creates it again, and AllowChangelogRecreate decides whether the stores' state may restart from it", t)
		}
		if d.Err != nil {
			return nil, fmt.Errorf("reading metadata of changelog %s: %w", t, d.Err)
		}
		logs[t] = logInfo{id: d.ID}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, topics...)
	for _, t := range topics {
		var rc kadm.ResourceConfig
		rerr := err
		if rerr == nil {
			rc, rerr = rcs.On(t, nil)
		}
		if rerr == nil {
			rerr = rc.Err
		}
		if rerr != nil {
			li := logs[t]
			li.configErr = rerr
			logs[t] = li
			log.Warn("cannot read the changelog's delete.retention.ms: checkpoints of its stores are not trusted, restores rebuild from the changelog's start", "topic", t, "err", rerr)
			continue
		}
		li := logs[t]
		li.deleteRetention = tombstoneRetention(rc.Configs)
		logs[t] = li
	}
	return logs, nil
}

// tombstoneRetention returns how long compaction keeps a tombstone of a
// topic with configs, as checkpoint.LogState.DeleteRetention:
// checkpoint.NoTombstoneExpiry when the topic is not compacted (tombstones
// go only with the records around them, which the log start offset shows)
// or delete.retention.ms does not fit a time.Duration; 0 when
// delete.retention.ms is 0, absent or unreadable (fail closed); otherwise
// delete.retention.ms.
func tombstoneRetention(configs []kadm.Config) time.Duration {
	var policy, retention *string
	for _, c := range configs {
		switch c.Key {
		case "cleanup.policy":
			policy = c.Value
		case "delete.retention.ms":
			retention = c.Value
		}
	}
	if policy == nil {
		return 0 // unknown whether compacted
	}
	if !slices.Contains(strings.Split(*policy, ","), "compact") {
		return checkpoint.NoTombstoneExpiry
	}
	if retention == nil {
		return 0
	}
	ms, err := strconv.ParseInt(strings.TrimSpace(*retention), 10, 64)
	switch {
	case err != nil || ms < 0:
		return 0
	case ms > math.MaxInt64/int64(time.Millisecond):
		return checkpoint.NoTombstoneExpiry
	}
	return time.Duration(ms) * time.Millisecond
}

func ptr(s string) *string { return &s }

// refusedTopics returns the error of a metadata request for topics that the
// brokers refused (err, TOPIC_AUTHORIZATION_FAILED: the principal may not
// describe one of them), naming each refused topic and the ACL it needs. The
// brokers refuse the whole request without saying which topic; each topic
// is asked for alone to find out.
func (p *Processor) refusedTopics(ctx context.Context, adm *kadm.Client, topics []string, err error) error {
	need := map[string]string{}
	for _, st := range p.stages {
		for _, t := range st.inputs {
			if !t.internal {
				need[t.name] = "Read"
			}
		}
		for _, t := range st.outputs {
			if !t.internal && need[t.name] == "" {
				need[t.name] = "Write"
			}
		}
	}
	for _, g := range p.globals {
		need[g.topic] = "Read"
	}
	var fixes []string
	for _, t := range topics {
		if _, terr := adm.Metadata(ctx, t); !errors.Is(terr, kerr.TopicAuthorizationFailed) {
			continue
		}
		if op, ok := need[t]; ok {
			fixes = append(fixes, fmt.Sprintf("%s on topic %s", op, t))
		} else {
			fixes = append(fixes, fmt.Sprintf("Create, Read, Write, DescribeConfigs and Delete on the topics prefixed %q (internal topic %s)", p.cfg.app+"-", t))
		}
	}
	if len(fixes) == 0 {
		return fmt.Errorf("%w: reading topic metadata: %w: grant the application's principal the topic ACLs of docs/security.md", ErrConfig, err)
	}
	slices.Sort(fixes)
	return fmt.Errorf("%w: reading topic metadata: %w: grant the application's principal %s (docs/security.md)", ErrConfig, err, strings.Join(fixes, "; "))
}
