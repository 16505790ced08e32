package balancer

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file simulates a consumer group the way kgo runs one with a
// cooperative balancer, so that tests can drive rebalances through the
// public kgo interfaces (JoinGroupMetadata, MemberBalancer, BalanceOrError,
// IntoSyncAssignment, ParseSyncAssignment) and check every step.

// assignmentMap is topic => sorted partitions, as kgo passes assignments.
type assignmentMap = map[string][]int32

// simMember is one group member: what it subscribes to, what it holds
// (kgo's lastAssigned: what it runs and reports as owned) and the generation
// of its last join (-1 before the first).
type simMember struct {
	id       string // member id
	instance string // "" for a dynamic member
	topics   []string
	held     assignmentMap
	gen      int32
}

func (m *simMember) join(bal kgo.GroupBalancer) kmsg.JoinGroupResponseMember {
	jm := kmsg.NewJoinGroupResponseMember()
	jm.MemberID = m.id
	if m.instance != "" {
		jm.InstanceID = kmsg.StringPtr(m.instance)
	}
	topics := slices.Clone(m.topics)
	sort.Strings(topics)
	held := make(assignmentMap, len(m.held))
	for t, ps := range m.held {
		held[t] = slices.Sorted(slices.Values(ps))
	}
	jm.ProtocolMetadata = bal.JoinGroupMetadata(topics, held, m.gen)
	return jm
}

// group is a simulated group with its topics' partition counts.
type group struct {
	members []*simMember
	counts  map[string]int32
	gen     int32
}

func newGroup(counts map[string]int32, ids ...string) *group {
	g := &group{counts: counts}
	for _, id := range ids {
		g.add(id)
	}
	return g
}

func (g *group) topicNames() []string {
	return slices.Sorted(maps.Keys(g.counts))
}

// add adds a new static member with instance id and member id derived from
// id, subscribing to every topic.
func (g *group) add(id string) *simMember {
	m := &simMember{id: "m-" + id, instance: id, topics: g.topicNames(), gen: -1}
	g.members = append(g.members, m)
	return m
}

func (g *group) remove(id string) {
	g.members = slices.DeleteFunc(g.members, func(m *simMember) bool { return m.instance == id })
}

func (g *group) byInstance(id string) *simMember {
	for _, m := range g.members {
		if m.instance == id {
			return m
		}
	}
	return nil
}

// balance runs the leader's side of one join round with New's balancer.
func balance(t testing.TB, members []*simMember, counts map[string]int32) map[string]assignmentMap {
	t.Helper()
	return balanceWith(t, New(), members, counts)
}

// balanceWith runs the leader's side of one join round through the kgo
// interfaces, with the members in the given order, and returns member id =>
// assignment.
func balanceWith(t testing.TB, bal kgo.GroupBalancer, members []*simMember, counts map[string]int32) map[string]assignmentMap {
	t.Helper()
	joins := make([]kmsg.JoinGroupResponseMember, len(members))
	for i, m := range members {
		joins[i] = m.join(bal)
	}
	mb, topics, err := bal.MemberBalancer(joins)
	if err != nil {
		t.Fatalf("MemberBalancer: %v", err)
	}
	// kgo passes the counts of the topics the members subscribe to.
	known := make(map[string]int32)
	for topic := range topics {
		if n, ok := counts[topic]; ok {
			known[topic] = n
		}
	}
	into, err := mb.(kgo.GroupMemberBalancerOrError).BalanceOrError(known)
	if err != nil {
		t.Fatalf("BalanceOrError: %v", err)
	}
	out := make(map[string]assignmentMap)
	for _, sa := range into.IntoSyncAssignment() {
		a, err := bal.ParseSyncAssignment(sa.MemberAssignment)
		if err != nil {
			t.Fatalf("ParseSyncAssignment(%s): %v", sa.MemberID, err)
		}
		if _, dup := out[sa.MemberID]; dup {
			t.Fatalf("member %s assigned twice", sa.MemberID)
		}
		out[sa.MemberID] = a
	}
	for _, m := range members {
		if _, ok := out[m.id]; !ok {
			t.Fatalf("member %s missing from the sync assignments", m.id)
		}
	}
	return out
}

// owners returns the leader's decision before the cooperative adjustment:
// task => owner member id.
func owners(t testing.TB, members []*simMember, counts map[string]int32) map[int32]string {
	t.Helper()
	joins := make([]kmsg.JoinGroupResponseMember, len(members))
	for i, m := range members {
		joins[i] = m.join(New())
	}
	b, err := kgo.NewConsumerBalancer(taskBalancer{}, joins)
	if err != nil {
		t.Fatal(err)
	}
	a := newAssignment(membersOf(b), counts)
	a.assign()
	out := make(map[int32]string)
	for p, o := range a.owner {
		if o >= 0 {
			out[int32(p)] = a.members[o].join.MemberID
		}
	}
	return out
}

// round runs one rebalance: every member joins with what it holds, the
// leader balances, and every member takes its assignment and, as kgo's
// cooperative consumer does, revokes what it lost. It fails the test if a
// member gains a partition of a task that another member ran when the round
// began (then two members could run the task at once). It reports whether any member
// lost partitions (it would rejoin, so another round follows).
func (g *group) round(t testing.TB) (lost bool) {
	t.Helper()
	plan := balance(t, g.members, g.counts)
	g.gen++
	// Who holds (runs) some partition of each task as the round begins.
	taskHeldBy := make(map[int32][]string)
	for _, m := range g.members {
		for _, p := range g.tasksOf(m) {
			taskHeldBy[p] = append(taskHeldBy[p], m.id)
		}
	}
	for _, m := range g.members {
		got := plan[m.id]
		for topic, ps := range got {
			for _, p := range ps {
				if slices.Contains(m.held[topic], p) {
					continue
				}
				// A gain: nobody else may be running any part of
				// the task, or two members would run task p.
				for _, h := range taskHeldBy[p] {
					if h != m.id {
						t.Fatalf("generation %d: %s gains %s/%d while %s still runs task %d\nbefore: %s\nplan: %s",
							g.gen, m.id, topic, p, h, p, g, fmtPlan(plan))
					}
				}
			}
		}
		for topic, ps := range m.held {
			for _, p := range ps {
				if !slices.Contains(got[topic], p) {
					lost = true
				}
			}
		}
		m.held = got
		m.gen = g.gen
	}
	return lost
}

// settle runs rounds until no member loses anything, and fails the test if
// that takes more than two rounds, then checks the group's final state.
func (g *group) settle(t testing.TB) (rounds int) {
	t.Helper()
	for rounds = 1; g.round(t); rounds++ {
		if rounds == 2 {
			t.Fatalf("not settled after 2 rounds: %s", g)
		}
	}
	g.checkSettled(t)
	return rounds
}

// checkSettled checks that every partition is held by exactly one member,
// that every task is on one member, and that the eligible members (those
// subscribing to every topic) hold ⌊n/m⌋ or ⌈n/m⌉ tasks each.
func (g *group) checkSettled(t testing.TB) {
	t.Helper()
	var tasks int32
	for _, n := range g.counts {
		tasks = max(tasks, n)
	}
	taskOwner := make(map[int32]string)
	heldBy := make(map[topicPartition]string)
	for _, m := range g.members {
		for topic, ps := range m.held {
			for _, p := range ps {
				tp := topicPartition{topic, p}
				if p < 0 || p >= g.counts[topic] {
					t.Fatalf("%s holds %s/%d, which does not exist: %s", m.id, topic, p, g)
				}
				if h, ok := heldBy[tp]; ok {
					t.Fatalf("%s/%d held by %s and %s: %s", topic, p, h, m.id, g)
				}
				heldBy[tp] = m.id
				if o, ok := taskOwner[p]; ok && o != m.id {
					t.Fatalf("task %d split over %s and %s: %s", p, o, m.id, g)
				}
				taskOwner[p] = m.id
			}
		}
	}
	for topic, n := range g.counts {
		for p := int32(0); p < n; p++ {
			if _, ok := heldBy[topicPartition{topic, p}]; !ok {
				t.Fatalf("%s/%d held by nobody: %s", topic, p, g)
			}
		}
	}
	var eligible int32
	for _, m := range g.members {
		if len(m.topics) == len(g.counts) {
			eligible++
		}
	}
	if eligible == 0 {
		return
	}
	lo, hi := tasks/eligible, (tasks+eligible-1)/eligible
	for _, m := range g.members {
		n := int32(len(g.tasksOf(m)))
		if len(m.topics) != len(g.counts) {
			if n != 0 {
				t.Fatalf("%s subscribes to %v only but runs %d tasks: %s", m.id, m.topics, n, g)
			}
			continue
		}
		if n < lo || n > hi {
			t.Fatalf("%s runs %d tasks, want %d..%d: %s", m.id, n, lo, hi, g)
		}
	}
}

// tasksOf returns the tasks a member holds any partition of, sorted.
func (g *group) tasksOf(m *simMember) []int32 {
	set := make(map[int32]bool)
	for _, ps := range m.held {
		for _, p := range ps {
			set[p] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// taskOwners returns task => member instance (or id) of the held state.
func (g *group) taskOwners() map[int32]string {
	out := make(map[int32]string)
	for _, m := range g.members {
		for _, p := range g.tasksOf(m) {
			out[p] = m.instance
		}
	}
	return out
}

func (g *group) String() string {
	var sb strings.Builder
	for i, m := range g.members {
		if i > 0 {
			sb.WriteString(" ")
		}
		fmt.Fprintf(&sb, "%s(gen %d)%s", m.id, m.gen, fmtAssignment(m.held))
	}
	return sb.String()
}

func fmtAssignment(a assignmentMap) string {
	var parts []string
	for _, topic := range slices.Sorted(maps.Keys(a)) {
		parts = append(parts, fmt.Sprintf("%s%v", topic, a[topic]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func fmtPlan(plan map[string]assignmentMap) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(plan)) {
		parts = append(parts, id+fmtAssignment(plan[id]))
	}
	return strings.Join(parts, " ")
}

// topicCounts returns counts for topics t0..t(n-1) with tasks partitions each.
func topicCounts(topics int, tasks int32) map[string]int32 {
	counts := make(map[string]int32, topics)
	for i := range topics {
		counts[fmt.Sprintf("t%d", i)] = tasks
	}
	return counts
}
