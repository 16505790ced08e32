package balancer

import (
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ProtocolName is the group protocol name of the balancer New returns. The
// broker only lets members that offer the same protocol share a group, so
// every member of a stage's group must use this balancer.
//
// The name is versioned: a change to the member metadata or to the
// assignment rules that members could disagree on needs a new name.
const ProtocolName = "sluice-task-v1"

// New returns the task balancer: it assigns each partition number p of all
// the group's topics (a task) to one member, evenly, sticky, and
// cooperatively. See the package documentation for the rules.
//
// Use it as the only balancer of the group: kgo.Balancers(balancer.New()).
// It keeps no state and is safe to share between clients.
func New() kgo.GroupBalancer { return taskBalancer{} }

// NewObserved returns the task balancer of New that also hands every
// assignment this member receives (each SyncGroup, in every generation) to
// onSync, after parsing and before kgo acts on it (revokes what is missing,
// then assigns what is new). onSync runs on kgo's group goroutine and must
// not block on the consumer; it must not modify the map.
//
// This is how a member learns its whole assignment at every rebalance: kgo's
// GroupTransactSession calls the revoke and lost callbacks at most once
// between two transaction ends, so a second rebalance inside one
// transaction reaches no callback, while it always reaches onSync.
func NewObserved(onSync func(assigned map[string][]int32)) kgo.GroupBalancer {
	return taskBalancer{onSync: onSync}
}

type taskBalancer struct {
	onSync func(map[string][]int32) // nil: not observed
}

var (
	_ kgo.GroupBalancer           = taskBalancer{}
	_ kgo.ConsumerBalancerBalance = taskBalancer{}
)

func (taskBalancer) ProtocolName() string { return ProtocolName }

// IsCooperative is true: kgo then revokes only the partitions a member loses
// and rejoins, instead of revoking everything before every join. Balance
// makes that safe with its cooperative adjustment.
func (taskBalancer) IsCooperative() bool { return true }

// JoinGroupMetadata encodes the member's subscription, the partitions it
// owns and the generation they were assigned in, as kgo's
// cooperative-sticky balancer does (ConsumerMemberMetadata v3: Topics,
// OwnedPartitions sorted by topic, Generation). UserData is left empty:
// nothing beyond the standard fields is needed.
//
// kgo passes generation -1 and no assignment before the member's first
// successful join.
func (taskBalancer) JoinGroupMetadata(interests []string, currentAssignment map[string][]int32, generation int32) []byte {
	meta := kmsg.NewConsumerMemberMetadata()
	meta.Version = 3
	meta.Topics = interests // sorted by kgo
	meta.Generation = generation
	for topic, partitions := range currentAssignment {
		if len(partitions) == 0 {
			continue
		}
		owned := kmsg.NewConsumerMemberMetadataOwnedPartition()
		owned.Topic = topic
		owned.Partitions = partitions // sorted by kgo
		meta.OwnedPartitions = append(meta.OwnedPartitions, owned)
	}
	// KAFKA-12898: sorted topics, and a deterministic encoding, so that
	// the broker does not see changed metadata (and rebalance) needlessly.
	sort.Slice(meta.OwnedPartitions, func(i, j int) bool {
		return meta.OwnedPartitions[i].Topic < meta.OwnedPartitions[j].Topic
	})
	return meta.AppendTo(nil)
}

func (s taskBalancer) ParseSyncAssignment(assignment []byte) (map[string][]int32, error) {
	assigned, err := kgo.ParseConsumerSyncAssignment(assignment)
	if err == nil && s.onSync != nil {
		s.onSync(assigned)
	}
	return assigned, err
}

// MemberBalancer parses every member's metadata; it fails if one cannot be
// parsed, and kgo then fails this join round and retries.
func (s taskBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	b, err := kgo.NewConsumerBalancer(s, members)
	return b, b.MemberTopics(), err
}

// Balance assigns whole tasks and then adjusts the plan for cooperative
// rebalancing: first per task (see assignment.fillPlan), then per partition
// with kgo's own AdjustCooperative, as kgo's cooperative-sticky balancer
// does. It cannot fail: with no members or no topics the plan is empty.
func (taskBalancer) Balance(b *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	a := newAssignment(membersOf(b), topics)
	a.assign()
	plan := b.NewPlan()
	a.fillPlan(plan, true)
	plan.AdjustCooperative(b)
	return plan
}

// membersOf returns the members of b with their parsed metadata.
func membersOf(b *kgo.ConsumerBalancer) []member {
	var ms []member
	b.EachMember(func(jm *kmsg.JoinGroupResponseMember, meta *kmsg.ConsumerMemberMetadata) {
		m := member{
			join:       jm,
			topics:     make(map[string]bool, len(meta.Topics)),
			owned:      meta.OwnedPartitions,
			generation: meta.Generation,
		}
		for _, t := range meta.Topics {
			m.topics[t] = true
		}
		ms = append(ms, m)
	})
	return ms
}
