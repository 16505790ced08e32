package balancer

import (
	"maps"
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// member is one group member as the leader sees it in the JoinGroup
// response.
type member struct {
	join       *kmsg.JoinGroupResponseMember
	topics     map[string]bool // subscribed topics
	owned      []kmsg.ConsumerMemberMetadataOwnedPartition
	generation int32 // of the owned partitions; -1 if unknown
}

// memberLess orders members as kgo does before balancing: static members
// first, by instance id, then dynamic members by member id. Member ids are
// unique in a join, so the order is total.
func memberLess(l, r *kmsg.JoinGroupResponseMember) bool {
	switch {
	case l.InstanceID != nil && r.InstanceID != nil:
		if *l.InstanceID != *r.InstanceID {
			return *l.InstanceID < *r.InstanceID
		}
	case l.InstanceID != nil:
		return true
	case r.InstanceID != nil:
		return false
	}
	return l.MemberID < r.MemberID
}

type topicPartition struct {
	topic     string
	partition int32
}

// claim is a member's report that it owns a partition.
type claim struct {
	member     int // index into assignment.members
	generation int32
}

// assignment computes which member runs which task. It is built from one
// join round and used once.
type assignment struct {
	members []member         // sorted by memberLess
	topics  []string         // the balanced topics, sorted
	counts  map[string]int32 // partitions per balanced topic (> 0)
	tasks   int32            // max of counts: the tasks are 0..tasks-1

	// eligible members may be given tasks: those subscribing to every
	// balanced topic, or all members if none does.
	eligible []int

	// claims of each existing partition of a balanced topic, in member
	// order, one per member.
	claims map[topicPartition][]claim

	// owner[p] is the member task p is assigned to, or -1 when no member
	// is eligible.
	owner []int
}

// newAssignment collects the balanced topics, the eligible members and the
// members' claims. counts is the partition count per topic from kgo's
// metadata; topics nobody subscribes to, or without partitions, are left
// out.
func newAssignment(members []member, counts map[string]int32) *assignment {
	a := &assignment{
		members: append([]member(nil), members...),
		counts:  make(map[string]int32),
		claims:  make(map[topicPartition][]claim),
	}
	sort.SliceStable(a.members, func(i, j int) bool { return memberLess(a.members[i].join, a.members[j].join) })

	for _, m := range a.members {
		for t := range m.topics {
			if n := counts[t]; n > 0 {
				if _, ok := a.counts[t]; !ok {
					a.counts[t] = n
					a.topics = append(a.topics, t)
				}
				a.tasks = max(a.tasks, n)
			}
		}
	}
	sort.Strings(a.topics)

	for i, m := range a.members {
		all := true
		for _, t := range a.topics {
			all = all && m.topics[t]
		}
		if all {
			a.eligible = append(a.eligible, i)
		}
	}
	if len(a.eligible) == 0 {
		for i := range a.members {
			a.eligible = append(a.eligible, i)
		}
	}

	// Claims are arbitrary input from other members: ignore topics we do
	// not balance, partitions out of range, and duplicates.
	for i, m := range a.members {
		for _, o := range m.owned {
			n, ok := a.counts[o.Topic]
			if !ok {
				continue
			}
			for _, p := range o.Partitions {
				if p < 0 || p >= n {
					continue
				}
				tp := topicPartition{o.Topic, p}
				cs := a.claims[tp]
				if len(cs) > 0 && cs[len(cs)-1].member == i {
					continue
				}
				a.claims[tp] = append(cs, claim{i, m.generation})
			}
		}
	}
	return a
}

// validClaim reports whether member claims tp and no other member claims it
// at a higher generation (KIP-792: a member that missed rebalances can
// report partitions that have since moved). This is the ownership kgo's
// AdjustCooperative counts.
func (a *assignment) validClaim(member int, tp topicPartition) bool {
	var mine, top int32 = -1, -1
	found := false
	for _, c := range a.claims[tp] {
		if c.member == member {
			mine, found = c.generation, true
		}
		top = max(top, c.generation)
	}
	return found && mine >= top
}

// partitions returns the partitions of task p, one per balanced topic that
// has partition p, in topic order.
func (a *assignment) partitions(p int32) []topicPartition {
	var tps []topicPartition
	for _, t := range a.topics {
		if p < a.counts[t] {
			tps = append(tps, topicPartition{t, p})
		}
	}
	return tps
}

// assign sets owner: every task goes to exactly one eligible member, each
// eligible member gets ⌊tasks/m⌋ or ⌈tasks/m⌉ of them, and as many tasks as
// that balance allows stay with their prior owner: the eligible member that
// validly claims most partitions of the task (ties: member order).
func (a *assignment) assign() {
	a.owner = make([]int, a.tasks)
	isEligible := make(map[int]bool, len(a.eligible))
	for _, i := range a.eligible {
		isEligible[i] = true
	}

	// Prior owner of each task, and per eligible member its prior tasks.
	valid := make([]int, len(a.members)) // scratch: valid claims in task p per member
	priorTasks := make(map[int][]int32)
	priorValid := make([]int, a.tasks) // valid claims of the prior owner in task p
	for p := int32(0); p < a.tasks; p++ {
		clear(valid)
		best := -1
		for _, tp := range a.partitions(p) {
			for _, c := range a.claims[tp] {
				if isEligible[c.member] && a.validClaim(c.member, tp) {
					valid[c.member]++
				}
			}
		}
		for _, i := range a.eligible { // member order: ties go to the first
			if valid[i] > 0 && (best < 0 || valid[i] > valid[best]) {
				best = i
			}
		}
		a.owner[p] = -1
		if best >= 0 {
			priorTasks[best] = append(priorTasks[best], p)
			priorValid[p] = valid[best]
		}
	}
	if len(a.eligible) == 0 || a.tasks == 0 {
		return
	}

	// INVARIANT: every eligible member ends with base or base+1 tasks, and
	// exactly extra of them with base+1; the sum is a.tasks.
	m := int32(len(a.eligible))
	base, extra := a.tasks/m, a.tasks%m
	count := make(map[int]int32, len(a.eligible))
	bigger := make(map[int]bool) // members given one of the extra slots

	// Keep phase. A member keeps at most base of its prior tasks, and one
	// more while extra slots last; keeping base+1 only helps members with
	// more than base prior tasks, and those get the extra slots first
	// (in member order), which maximises the tasks that stay put. A member
	// keeps the tasks of which it owns the most partitions, then the
	// lowest numbered.
	for _, i := range a.eligible {
		ts := priorTasks[i] // ascending
		sort.SliceStable(ts, func(x, y int) bool { return priorValid[ts[x]] > priorValid[ts[y]] })
		keep := min(int32(len(ts)), base)
		if int32(len(ts)) > base && extra > 0 {
			keep++
			extra--
			bigger[i] = true
		}
		for _, p := range ts[:keep] {
			a.owner[p] = i
		}
		count[i] = keep
	}

	// Fill phase. The remaining tasks, lowest first, go to the member with
	// the fewest tasks that still has room; a member at base has room
	// while extra slots are left. Among members with as many tasks, the
	// one that kept fewer gets it (then member order): a new or restarted
	// member takes the extra slot rather than a member whose tasks did not
	// change, so fewer members see their assignment change.
	kept := maps.Clone(count)
	for p := int32(0); p < a.tasks; p++ {
		if a.owner[p] >= 0 {
			continue
		}
		to := -1
		for _, i := range a.eligible {
			room := count[i] < base || count[i] == base && !bigger[i] && extra > 0
			if !room {
				continue
			}
			if to < 0 || count[i] < count[to] || count[i] == count[to] && kept[i] < kept[to] {
				to = i
			}
		}
		// to >= 0 by the INVARIANT: free tasks == free room.
		if count[to] == base {
			extra--
			bigger[to] = true
		}
		a.owner[p] = to
		count[to]++
	}
}

// contested reports whether a member other than the owner claims any
// partition of task p, at any generation.
func (a *assignment) contested(p int32) bool {
	for _, tp := range a.partitions(p) {
		for _, c := range a.claims[tp] {
			if c.member != a.owner[p] {
				return true
			}
		}
	}
	return false
}

// fillPlan adds every task's partitions to its owner's plan, leaving out the
// partitions of topics the owner does not subscribe to (possible only when
// no member subscribes to every topic).
//
// With cooperative set, a contested task (another member claims part of it)
// gives its owner only the partitions of it that the owner validly owns
// already. The other claimants lose their parts in this plan, revoke them
// and rejoin, and the next rebalance, where the task is no longer
// contested, gives the owner the rest.
//
// INVARIANT (cooperative): a member is never given a partition of a task
// that any other member may still be running, not even a partition nobody
// owned: two members never run the same task.
func (a *assignment) fillPlan(plan *kgo.BalancePlan, cooperative bool) {
	for p := int32(0); p < a.tasks; p++ {
		o := a.owner[p]
		if o < 0 {
			continue
		}
		withhold := cooperative && a.contested(p)
		m := &a.members[o]
		for _, tp := range a.partitions(p) {
			if !m.topics[tp.topic] || withhold && !a.validClaim(o, tp) {
				continue
			}
			plan.AddPartition(m.join, tp.topic, tp.partition)
		}
	}
}
