package balancer

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("i%d", i)
	}
	return out
}

// TestEvenWholeTasks balances a new group of 1..5 members over 1..3 topics
// of 1..12 partitions: one round, every task whole on one member, every
// partition assigned once, ⌊n/m⌋ or ⌈n/m⌉ tasks per member (checkSettled).
func TestEvenWholeTasks(t *testing.T) {
	for topics := 1; topics <= 3; topics++ {
		for tasks := int32(1); tasks <= 12; tasks++ {
			for members := 1; members <= 5; members++ {
				t.Run(fmt.Sprintf("topics=%d/tasks=%d/members=%d", topics, tasks, members), func(t *testing.T) {
					g := newGroup(topicCounts(topics, tasks), ids(members)...)
					if rounds := g.settle(t); rounds != 1 {
						t.Fatalf("a new group took %d rounds, want 1", rounds)
					}
				})
			}
		}
	}
}

// TestDeterministic: the plan depends only on the members and their
// metadata, not on the order kgo lists them in nor on map iteration order.
func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		topics  int
		tasks   int32
		members int
	}{{1, 7, 3}, {2, 12, 5}, {3, 5, 4}, {2, 1, 3}} {
		t.Run(fmt.Sprintf("topics=%d/tasks=%d/members=%d", tc.topics, tc.tasks, tc.members), func(t *testing.T) {
			g := newGroup(topicCounts(tc.topics, tc.tasks), ids(tc.members)...)
			randomHeld(rng, g)
			want := balance(t, g.members, g.counts)
			for range 20 {
				shuffled := slices.Clone(g.members)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				if got := balance(t, shuffled, g.counts); !reflect.DeepEqual(got, want) {
					t.Fatalf("plan depends on member order:\n got %s\nwant %s", fmtPlan(got), fmtPlan(want))
				}
			}
		})
	}
}

// maxKept is the most tasks that can stay with their owners when members
// holding held[i] tasks are rebalanced over m members: each keeps up to its
// share, and the n%m larger shares go to members holding more than ⌊n/m⌋.
func maxKept(held []int32, tasks int32, m int32) int32 {
	base, extra := tasks/m, tasks%m
	var kept int32
	for _, h := range held {
		kept += min(h, base)
		if h > base && extra > 0 {
			kept++
			extra--
		}
	}
	return kept
}

// moved counts the tasks whose owner changed between two taskOwners maps.
func moved(before, after map[int32]string) int32 {
	var n int32
	for p, o := range before {
		if after[p] != o {
			n++
		}
	}
	return n
}

// TestStickyAddMember: a member joining a settled group moves the minimum
// number of tasks (and only in a second round, after their owners revoked
// them).
func TestStickyAddMember(t *testing.T) {
	// A few cases spelled out; the loop below checks all small ones.
	for _, tc := range []struct {
		tasks        int32
		members      int
		wantMoved    int32
		wantNewTasks int
	}{
		{tasks: 12, members: 3, wantMoved: 3, wantNewTasks: 3},
		{tasks: 8, members: 2, wantMoved: 2, wantNewTasks: 2},
		{tasks: 5, members: 1, wantMoved: 2, wantNewTasks: 2},
		{tasks: 4, members: 4, wantMoved: 0, wantNewTasks: 0},
		{tasks: 1, members: 1, wantMoved: 0, wantNewTasks: 0},
	} {
		t.Run(fmt.Sprintf("tasks=%d/members=%d", tc.tasks, tc.members), func(t *testing.T) {
			g := newGroup(topicCounts(2, tc.tasks), ids(tc.members)...)
			g.settle(t)
			before := g.taskOwners()
			added := g.add("new")
			g.settle(t)
			if got := moved(before, g.taskOwners()); got != tc.wantMoved {
				t.Fatalf("moved %d tasks, want %d: %s", got, tc.wantMoved, g)
			}
			if got := len(g.tasksOf(added)); got != tc.wantNewTasks {
				t.Fatalf("new member runs %d tasks, want %d: %s", got, tc.wantNewTasks, g)
			}
		})
	}
	for topics := 1; topics <= 3; topics++ {
		for tasks := int32(1); tasks <= 12; tasks++ {
			for members := 1; members <= 4; members++ {
				t.Run(fmt.Sprintf("topics=%d/tasks=%d/members=%d", topics, tasks, members), func(t *testing.T) {
					g := newGroup(topicCounts(topics, tasks), ids(members)...)
					g.settle(t)
					before := g.taskOwners()
					var held []int32
					for _, m := range g.members {
						held = append(held, int32(len(g.tasksOf(m))))
					}
					g.add("new")
					g.settle(t)
					want := tasks - maxKept(held, tasks, int32(members+1))
					if got := moved(before, g.taskOwners()); got != want {
						t.Fatalf("moved %d tasks, want the minimum %d: %s", got, want, g)
					}
				})
			}
		}
	}
}

// TestStickyRemoveMember: when a member leaves, the others keep every task
// they ran and only the leaver's tasks move.
func TestStickyRemoveMember(t *testing.T) {
	for topics := 1; topics <= 3; topics++ {
		for tasks := int32(1); tasks <= 12; tasks++ {
			for members := 2; members <= 5; members++ {
				for leave := range members {
					t.Run(fmt.Sprintf("topics=%d/tasks=%d/members=%d/leave=%d", topics, tasks, members, leave), func(t *testing.T) {
						g := newGroup(topicCounts(topics, tasks), ids(members)...)
						g.settle(t)
						before := make(map[string][]int32)
						for _, m := range g.members {
							before[m.instance] = g.tasksOf(m)
						}
						g.remove(ids(members)[leave])
						if rounds := g.settle(t); rounds != 1 {
							t.Fatalf("took %d rounds, want 1 (nobody should lose a task)", rounds)
						}
						for _, m := range g.members {
							now := g.tasksOf(m)
							for _, p := range before[m.instance] {
								if !slices.Contains(now, p) {
									t.Fatalf("%s lost task %d: %s", m.id, p, g)
								}
							}
						}
					})
				}
			}
		}
	}
}

// TestCooperativeMove: a task moving from A to B is first taken from A (for
// every topic) and given to B only in the next rebalance.
func TestCooperativeMove(t *testing.T) {
	g := newGroup(map[string]int32{"a": 4, "b": 4}, "A")
	g.settle(t)
	b := g.add("B")

	if got, want := owners(t, g.members, g.counts), map[int32]string{0: "m-A", 1: "m-A", 2: "m-B", 3: "m-B"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("planned owners %v, want %v", got, want)
	}
	plan := balance(t, g.members, g.counts)
	wantPlan := map[string]assignmentMap{
		"m-A": {"a": {0, 1}, "b": {0, 1}},
		"m-B": {},
	}
	if !reflect.DeepEqual(plan, wantPlan) {
		t.Fatalf("first rebalance:\n got %s\nwant %s", fmtPlan(plan), fmtPlan(wantPlan))
	}
	if !g.round(t) {
		t.Fatal("A lost nothing in the first rebalance")
	}
	if g.round(t) {
		t.Fatal("someone lost a partition in the second rebalance")
	}
	if want := (assignmentMap{"a": {2, 3}, "b": {2, 3}}); !reflect.DeepEqual(b.held, want) {
		t.Fatalf("after the second rebalance B runs %s, want %s", fmtAssignment(b.held), fmtAssignment(want))
	}
	g.checkSettled(t)
}

// TestPartialTask: a task owned only in part, or split over two members (an
// inconsistent earlier state), is planned whole for one member; while
// another member still runs part of it, its new owner gains nothing of it,
// not even a partition nobody ran.
func TestPartialTask(t *testing.T) {
	for _, tc := range []struct {
		name       string
		held       map[string]assignmentMap // by instance
		wantOwners map[int32]string
		wantFirst  map[string]assignmentMap
		wantFinal  map[string]assignmentMap
	}{
		{
			// A runs task 1 and half of task 0 (b/0 unowned). Balance
			// moves task 0 to B; B must not get b/0 while A runs a/0.
			name: "half-owned task moves",
			held: map[string]assignmentMap{
				"A": {"a": {0, 1}, "b": {1}},
				"B": {},
			},
			wantOwners: map[int32]string{0: "m-B", 1: "m-A"},
			wantFirst:  map[string]assignmentMap{"m-A": {"a": {1}, "b": {1}}, "m-B": {}},
			wantFinal:  map[string]assignmentMap{"m-A": {"a": {1}, "b": {1}}, "m-B": {"a": {0}, "b": {0}}},
		},
		{
			// A runs a/0, B runs b/0: task 0 goes whole to A (tie:
			// member order); A gets b/0 after B revoked it.
			name: "task split over two members",
			held: map[string]assignmentMap{
				"A": {"a": {0}, "b": {1}},
				"B": {"a": {1}, "b": {0}},
			},
			wantOwners: map[int32]string{0: "m-A", 1: "m-B"},
			wantFirst:  map[string]assignmentMap{"m-A": {"a": {0}}, "m-B": {"a": {1}}},
			wantFinal:  map[string]assignmentMap{"m-A": {"a": {0}, "b": {0}}, "m-B": {"a": {1}, "b": {1}}},
		},
		{
			// A owns a/0 and nothing else: it keeps task 0 and gets
			// b/0 at once, as nobody else runs any of task 0.
			name: "half-owned task stays",
			held: map[string]assignmentMap{
				"A": {"a": {0}},
				"B": {"a": {1}, "b": {1}},
			},
			wantOwners: map[int32]string{0: "m-A", 1: "m-B"},
			wantFirst:  map[string]assignmentMap{"m-A": {"a": {0}, "b": {0}}, "m-B": {"a": {1}, "b": {1}}},
			wantFinal:  map[string]assignmentMap{"m-A": {"a": {0}, "b": {0}}, "m-B": {"a": {1}, "b": {1}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(map[string]int32{"a": 2, "b": 2}, "A", "B")
			for id, held := range tc.held {
				m := g.byInstance(id)
				m.held, m.gen = held, 3
			}
			g.gen = 3
			if got := owners(t, g.members, g.counts); !reflect.DeepEqual(got, tc.wantOwners) {
				t.Fatalf("planned owners %v, want %v", got, tc.wantOwners)
			}
			if got := balance(t, g.members, g.counts); !reflect.DeepEqual(got, tc.wantFirst) {
				t.Fatalf("first rebalance:\n got %s\nwant %s", fmtPlan(got), fmtPlan(tc.wantFirst))
			}
			g.settle(t)
			final := make(map[string]assignmentMap)
			for _, m := range g.members {
				final[m.id] = m.held
			}
			if !reflect.DeepEqual(final, tc.wantFinal) {
				t.Fatalf("settled:\n got %s\nwant %s", fmtPlan(final), fmtPlan(tc.wantFinal))
			}
		})
	}
}

// TestStaleClaim follows KIP-792 as kgo's AdjustCooperative does: a claim
// beaten by a higher-generation claim of another member does not count as
// ownership.
func TestStaleClaim(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bGen  int32
		wantB assignmentMap
	}{
		// B reports a/1 from generation 3, A from generation 5: B's claim
		// is stale, so B gets a/1 only after A revoked it.
		{"stale", 3, assignmentMap{}},
		// Same generation: both claims count; B keeps a/1 and A revokes
		// it, as cooperative-sticky would.
		{"same generation", 5, assignmentMap{"a": {1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(map[string]int32{"a": 2}, "A", "B")
			a, b := g.byInstance("A"), g.byInstance("B")
			a.held, a.gen = assignmentMap{"a": {0, 1}}, 5
			b.held, b.gen = assignmentMap{"a": {1}}, tc.bGen
			g.gen = 5
			plan := balance(t, g.members, g.counts)
			if want := (assignmentMap{"a": {0}}); !reflect.DeepEqual(plan["m-A"], want) {
				t.Fatalf("A: got %s, want %s", fmtAssignment(plan["m-A"]), fmtAssignment(want))
			}
			if !reflect.DeepEqual(plan["m-B"], tc.wantB) {
				t.Fatalf("B: got %s, want %s", fmtAssignment(plan["m-B"]), fmtAssignment(tc.wantB))
			}
			g.settle(t)
		})
	}
}

// TestStaticRejoin: members are ordered by instance id, so a static member
// that rejoins under a new member id, reporting what it owns, changes
// nothing. A restarted process (it reports nothing) gets its tasks back
// here because every other member is at its share, so only it has room.
func TestStaticRejoin(t *testing.T) {
	g := newGroup(map[string]int32{"a": 7, "b": 7}, "i1", "i2", "i3")
	// Member ids that sort against the instance ids.
	g.byInstance("i1").id, g.byInstance("i2").id, g.byInstance("i3").id = "z", "y", "x"
	g.settle(t)
	before := g.taskOwners()

	m := g.byInstance("i2")
	m.id = "a-new"
	if g.round(t) {
		t.Fatalf("a static member rejoining with a new member id made someone lose a partition: %s", g)
	}
	if after := g.taskOwners(); !reflect.DeepEqual(after, before) {
		t.Fatalf("tasks moved on rejoin: before %v after %v", before, after)
	}

	// Restart: new member id, nothing owned, generation unknown.
	m.id, m.held, m.gen = "b-restarted", nil, -1
	if rounds := g.settle(t); rounds != 1 {
		t.Fatalf("restart took %d rounds, want 1", rounds)
	}
	if after := g.taskOwners(); !reflect.DeepEqual(after, before) {
		t.Fatalf("tasks moved on restart: before %v after %v", before, after)
	}
}

// TestUnequalPartitions: co-partitioning is checked by the runtime; here a
// topic with fewer partitions takes part only in the tasks it has.
func TestUnequalPartitions(t *testing.T) {
	for members := 1; members <= 4; members++ {
		t.Run(fmt.Sprintf("members=%d", members), func(t *testing.T) {
			g := newGroup(map[string]int32{"a": 4, "b": 2, "c": 3}, ids(members)...)
			g.settle(t) // checks partitions exist, whole tasks 0..3, coverage
			g.add("late")
			g.settle(t)
		})
	}
}

// TestTopicWithoutMetadata: a topic the members subscribe to but kgo has no
// partitions for (not created yet) is left out.
func TestTopicWithoutMetadata(t *testing.T) {
	g := newGroup(map[string]int32{"a": 3}, "A", "B")
	for _, m := range g.members {
		m.topics = []string{"a", "missing"}
	}
	plan := balance(t, g.members, map[string]int32{"a": 3, "missing": 0})
	want := map[string]assignmentMap{"m-A": {"a": {0, 2}}, "m-B": {"a": {1}}}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("got %s, want %s", fmtPlan(plan), fmtPlan(want))
	}
	plan = balance(t, g.members, map[string]int32{})
	want = map[string]assignmentMap{"m-A": {}, "m-B": {}}
	if !reflect.DeepEqual(plan, want) {
		t.Fatalf("no metadata: got %s, want %s", fmtPlan(plan), fmtPlan(want))
	}
}

// TestSubscriptions: members that do not subscribe to every topic get no
// tasks while some member does; with no such member, every member is
// eligible and gets only partitions of the topics it subscribes to.
func TestSubscriptions(t *testing.T) {
	t.Run("partial subscriber idles", func(t *testing.T) {
		g := newGroup(map[string]int32{"a": 4, "b": 4}, "A", "B", "C")
		g.byInstance("B").topics = []string{"a"}
		g.settle(t) // checkSettled: B runs nothing, A and C two tasks each
		if n := len(g.tasksOf(g.byInstance("B"))); n != 0 {
			t.Fatalf("B runs %d tasks", n)
		}
		// B upgraded: it gets its share, in two rounds.
		g.byInstance("B").topics = []string{"a", "b"}
		g.settle(t)
	})
	t.Run("nobody subscribes to all", func(t *testing.T) {
		g := newGroup(map[string]int32{"a": 4, "b": 4}, "A", "B")
		g.byInstance("A").topics = []string{"a"}
		g.byInstance("B").topics = []string{"b"}
		plan := balance(t, g.members, g.counts)
		want := map[string]assignmentMap{"m-A": {"a": {0, 2}}, "m-B": {"b": {1, 3}}}
		if !reflect.DeepEqual(plan, want) {
			t.Fatalf("got %s, want %s", fmtPlan(plan), fmtPlan(want))
		}
	})
}

// TestFromCooperativeSticky starts from an assignment of kgo's
// cooperative-sticky balancer, which splits tasks (3 members cannot hold 4
// whole tasks of 2 topics as 3+3+2 partitions), and checks that the group
// settles on whole tasks without two members ever running a task at once.
func TestFromCooperativeSticky(t *testing.T) {
	g := newGroup(map[string]int32{"a": 4, "b": 4}, "A", "B", "C")
	plan := balanceWith(t, kgo.CooperativeStickyBalancer(), g.members, g.counts)
	g.gen = 1
	for _, m := range g.members {
		m.held, m.gen = plan[m.id], 1
	}
	split := false
	owner := make(map[int32]string)
	for _, m := range g.members {
		for _, p := range g.tasksOf(m) {
			if o, ok := owner[p]; ok && o != m.id {
				split = true
			}
			owner[p] = m.id
		}
	}
	if !split {
		t.Fatalf("cooperative-sticky kept tasks whole (%s); the test needs a split", g)
	}
	g.settle(t)
}

// TestJoinGroupMetadata: the member metadata is ConsumerMemberMetadata v3
// with the subscription, the owned partitions sorted by topic and the
// generation, and encodes the same bytes for the same input (the broker
// compares metadata to decide whether a rejoin changes anything).
func TestJoinGroupMetadata(t *testing.T) {
	owned := map[string][]int32{"c": {0, 2}, "a": {1}, "b": {}, "d": {3}}
	bal := New()
	first := bal.JoinGroupMetadata([]string{"a", "b", "c", "d"}, owned, 7)
	for range 50 {
		if got := bal.JoinGroupMetadata([]string{"a", "b", "c", "d"}, maps.Clone(owned), 7); !slices.Equal(got, first) {
			t.Fatal("metadata encoding is not deterministic")
		}
	}
	var meta kmsg.ConsumerMemberMetadata
	if err := meta.ReadFrom(first); err != nil {
		t.Fatal(err)
	}
	if meta.Version != 3 || meta.Generation != 7 || !slices.Equal(meta.Topics, []string{"a", "b", "c", "d"}) {
		t.Fatalf("version %d generation %d topics %v", meta.Version, meta.Generation, meta.Topics)
	}
	var got []string
	for _, o := range meta.OwnedPartitions {
		got = append(got, fmt.Sprintf("%s%v", o.Topic, o.Partitions))
	}
	if want := []string{"a[1]", "c[0 2]", "d[3]"}; !slices.Equal(got, want) {
		t.Fatalf("owned %v, want %v", got, want)
	}
	empty := kmsg.NewConsumerMemberAssignment()
	a, err := bal.ParseSyncAssignment(empty.AppendTo(nil))
	if err != nil || len(a) != 0 {
		t.Fatalf("empty assignment: %v %v", a, err)
	}
}

// randomHeld gives the members of g a random, possibly inconsistent earlier
// state: partitions owned by nobody, by one member or by two, from random
// generations.
func randomHeld(rng *rand.Rand, g *group) {
	for _, m := range g.members {
		m.held = make(assignmentMap)
		m.gen = rng.Int32N(4) - 1
		g.gen = max(g.gen, m.gen)
	}
	for _, topic := range g.topicNames() {
		for p := range g.counts[topic] {
			for range rng.IntN(3) {
				m := g.members[rng.IntN(len(g.members))]
				if !slices.Contains(m.held[topic], p) {
					m.held[topic] = append(m.held[topic], p)
				}
			}
		}
	}
	for _, m := range g.members {
		for topic := range m.held {
			slices.Sort(m.held[topic])
		}
	}
}

// TestRandomized runs random membership changes from random inconsistent
// starting states. Every rebalance must keep a task off two members at once,
// every change must settle within two rebalances on whole, evenly spread
// tasks, joins must move the minimum and leaves must move only the
// leaver's tasks. A failure names its seed; rerun it alone with
// go test -run 'TestRandomized/seed=<n>$'.
func TestRandomized(t *testing.T) {
	seeds := 200
	if testing.Short() {
		seeds = 20
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			counts := make(map[string]int32)
			tasks := 1 + rng.Int32N(12)
			for i := range 1 + rng.IntN(3) {
				// Mostly co-partitioned; sometimes not.
				n := tasks
				if rng.IntN(5) == 0 {
					n = 1 + rng.Int32N(12)
				}
				counts[fmt.Sprintf("t%d", i)] = n
			}
			g := newGroup(counts, ids(1+rng.IntN(5))...)
			randomHeld(rng, g)
			g.settle(t)
			next := 100
			for step := range 30 {
				before := g.taskOwners()
				switch op := rng.IntN(4); {
				case op == 0 && len(g.members) < 6: // join
					var held []int32
					for _, m := range g.members {
						held = append(held, int32(len(g.tasksOf(m))))
					}
					g.add(fmt.Sprintf("i%d", next))
					next++
					g.settle(t)
					var all int32
					for _, n := range counts {
						all = max(all, n)
					}
					if got, want := moved(before, g.taskOwners()), all-maxKept(held, all, int32(len(g.members))); got != want {
						t.Fatalf("step %d: join moved %d tasks, want %d", step, got, want)
					}
				case op == 1 && len(g.members) > 1: // leave
					leaver := g.members[rng.IntN(len(g.members))]
					g.remove(leaver.instance)
					g.settle(t)
					for p, o := range before {
						if o != leaver.instance && g.taskOwners()[p] != o {
							t.Fatalf("step %d: task %d moved from %s though %s left", step, p, o, leaver.instance)
						}
					}
				case op == 2: // static rejoin under a new member id
					m := g.members[rng.IntN(len(g.members))]
					m.id = fmt.Sprintf("m-%s-%d", m.instance, step)
					g.settle(t)
					if !reflect.DeepEqual(before, g.taskOwners()) {
						t.Fatalf("step %d: static rejoin moved tasks", step)
					}
				default: // restart: new member id, nothing reported
					// Its tasks are free: they may go to any member
					// with room, but the others keep theirs.
					m := g.members[rng.IntN(len(g.members))]
					m.id, m.held, m.gen = fmt.Sprintf("m-%s-%d", m.instance, step), nil, -1
					g.settle(t)
					after := g.taskOwners()
					for p, o := range before {
						if o != m.instance && after[p] != o {
							t.Fatalf("step %d: restart of %s moved task %d from %s: %s", step, m.instance, p, o, g)
						}
					}
				}
			}
		})
	}
}
