// Package balancer is the consumer-group balancer of a sluice stage: a
// [kgo.GroupBalancer] that assigns whole tasks, sticky and cooperative.
// Only package processor imports it (Go's internal rule keeps users out).
//
// A stage is one consumer group that may read several co-partitioned input
// topics (a join, or operators that share a store). Its unit of work is a
// task: one partition number p across ALL of the stage's input topics,
// because the task's local state (Pebble) and its changelog partition p are
// shared by the records of every input partition p. kgo's
// CooperativeStickyBalancer balances partitions, not tasks, and may give
// orders/0 to one member and payments/0 to another; this balancer never does.
//
// # Assignment
//
// The tasks are 0..max-1, where max is the largest partition count of the
// topics the members subscribe to. Partition counts come from the metadata
// kgo hands the balancer; a topic with fewer partitions takes part only in
// the tasks it has partitions for (the runtime checks co-partitioning and
// fails fast, so the balancer merely does not crash on a mismatch). Topics
// without metadata (not created yet, or erroring) are left out.
//
// Tasks are spread evenly by count: every member gets ⌊n/m⌋ or ⌈n/m⌉ of the n
// tasks. Members are ordered by instance id (static members first), then by
// member id, as kgo orders them, and every tie is broken by that order or by
// the task number, so the same join yields the same plan on any leader.
//
// Stickiness: a member keeps the tasks it owns (the OwnedPartitions of its
// JoinGroup metadata) as far as the balance allows; only the surplus of a
// member above its share moves, so adding a member moves the minimum number
// of tasks and removing one moves only the tasks it had. A task owned for
// only some of its topics, or split over members (an inconsistent earlier
// state, e.g. after switching from cooperative-sticky), goes whole to one
// member: the one validly claiming most of its partitions.
//
// Claims follow KIP-792 exactly as kgo's cooperative-sticky does: every
// member reports the generation of its claims, and a claim on a partition
// counts only if no other member claims that partition at a higher
// generation (a member that missed rebalances may still report partitions
// that have moved on).
//
// Members must subscribe to the same topics. If they do not (a rolling
// deploy that adds or removes an input), only the members subscribing to
// every topic of the group get tasks and the others idle, because a task
// cannot be split. If no member subscribes to them all (a misconfiguration),
// every member is eligible and gets the partitions of its tasks for the
// topics it subscribes to; the other partitions stay unassigned.
//
// # Cooperative rebalancing
//
// IsCooperative reports true, so members keep running the tasks they keep
// during a rebalance (KIP-429). A task moving from member A to member B is
// taken from A in one rebalance and given to B only in the next one, which
// A's revoke-and-rejoin triggers; in between nobody runs it. kgo's
// [kgo.BalancePlan.AdjustCooperative] does this partition by partition;
// the balancer first does it task by task (if any member other than the
// planned owner claims any partition of a task, the owner gets only the
// partitions of the task it already validly owns) and then runs
// AdjustCooperative as kgo's cooperative-sticky does. The task-level step
// matters when a task is owned only in part: without it B could receive
// payments/0 at once (nobody owned it) while A still ran orders/0.
//
// A change thus settles in at most two rebalances. The runtime sees the
// first as revokes (OnPartitionsRevoked) and the second as assigns.
//
// # Static membership
//
// The balancer keeps no state between rebalances: ownership comes only from
// what each member reports when it joins. A static member (kgo.InstanceID)
// that rejoins with a new member id keeps its tasks as long as it reports
// them. A restarted process reports nothing; the broker normally hands its
// old assignment back without a rebalance (KIP-345), and when a rebalance
// does happen first, its tasks are free for anyone.
//
// kgo does not run custom balancers when the broker answers a restarted
// static leader's join with SkipAssignment (KIP-814): the broker keeps the
// previous assignment, and a changed subscription of that leader waits for
// the next rebalance.
//
// # Caveats
//
// All members of a group must use this balancer (protocol [ProtocolName]).
// The broker picks a protocol every member supports, so a member offering
// only cooperative-sticky cannot join a group running this one
// (INCONSISTENT_GROUP_PROTOCOL), and a group cannot move from one to the
// other without either a full stop or a rolling deploy in which members
// offer both (listing this balancer first).
//
// It is a classic-protocol (client-side) balancer. KIP-848 groups are
// balanced by the broker, which knows nothing of tasks; kgo uses them only
// with its own range or sticky balancer first, so with this balancer kgo
// stays on the classic protocol even if kgo.ServerSideBalancer is set.
package balancer
