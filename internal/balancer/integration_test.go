package balancer_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/balancer"
	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// tracker follows what each member runs, from its OnPartitions callbacks,
// and records any moment at which a member was given a partition of a task
// that another member still ran. kgo calls a member's OnPartitionsRevoked
// before it rejoins, so a later assignment elsewhere is causally after it.
type tracker struct {
	t          *testing.T
	mu         sync.Mutex
	held       map[string]map[string][]int32 // instance => topic => partitions
	violations []string
}

func newTracker(t *testing.T) *tracker {
	return &tracker{t: t, held: make(map[string]map[string][]int32)}
}

func (tr *tracker) assigned(instance string, a map[string][]int32) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.t.Logf("%s assigned %v", instance, a)
	mine := tr.held[instance]
	if mine == nil {
		mine = make(map[string][]int32)
		tr.held[instance] = mine
	}
	for topic, ps := range a {
		for _, p := range ps {
			for other, theirs := range tr.held {
				if other == instance {
					continue
				}
				for ot, ops := range theirs {
					if slices.Contains(ops, p) {
						tr.violations = append(tr.violations,
							fmt.Sprintf("%s was given %s/%d while %s ran %s/%d (task %d)", instance, topic, p, other, ot, p, p))
					}
				}
			}
			if !slices.Contains(mine[topic], p) {
				mine[topic] = append(mine[topic], p)
			}
		}
		slices.Sort(mine[topic])
	}
}

func (tr *tracker) revoked(instance string, r map[string][]int32) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.t.Logf("%s revoked %v", instance, r)
	if tr.held[instance] == nil {
		return
	}
	for topic, ps := range r {
		tr.held[instance][topic] = slices.DeleteFunc(tr.held[instance][topic], func(p int32) bool { return slices.Contains(ps, p) })
		if len(tr.held[instance][topic]) == 0 {
			delete(tr.held[instance], topic)
		}
	}
}

// forget drops a closed member.
func (tr *tracker) forget(instance string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	delete(tr.held, instance)
}

// tasks returns instance => tasks it runs, when every member runs whole
// tasks of topics (each task's partition of every topic) and together they
// run all partitions numbered 0..partitions-1; otherwise it returns nil and
// why not.
func (tr *tracker) tasks(topics []string, partitions int32) (map[string][]int32, string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	out := make(map[string][]int32)
	runs := make(map[int32]string)
	for instance, held := range tr.held {
		var mine []int32
		for _, topic := range topics {
			for _, p := range held[topic] {
				if !slices.Contains(mine, p) {
					mine = append(mine, p)
				}
			}
		}
		slices.Sort(mine)
		for _, p := range mine {
			for _, topic := range topics {
				if !slices.Contains(held[topic], p) {
					return nil, fmt.Sprintf("%s runs part of task %d: %v", instance, p, held)
				}
			}
			if o, ok := runs[p]; ok {
				return nil, fmt.Sprintf("task %d on %s and %s", p, o, instance)
			}
			runs[p] = instance
		}
		out[instance] = mine
	}
	for p := range partitions {
		if _, ok := runs[p]; !ok {
			return nil, fmt.Sprintf("task %d unassigned: %v", p, tr.held)
		}
	}
	return out, ""
}

func (tr *tracker) failIfViolated() {
	tr.t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.violations) > 0 {
		tr.t.Fatalf("two members ran a task at once:\n%s", strings.Join(tr.violations, "\n"))
	}
}

// waitTasks waits until the members named run whole tasks, all of them,
// each ⌊n/m⌋ or ⌈n/m⌉, and returns the tasks per member.
func (tr *tracker) waitTasks(topics []string, partitions int32, members []string) map[string][]int32 {
	tr.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var why string
	for time.Now().Before(deadline) {
		tasks, reason := tr.tasks(topics, partitions)
		why = reason
		if tasks != nil {
			n := int32(len(members))
			lo, hi := partitions/n, (partitions+n-1)/n
			ok := len(tasks) == len(members)
			for _, m := range members {
				got := int32(len(tasks[m]))
				if got < lo || got > hi {
					ok = false
					why = fmt.Sprintf("unbalanced: %v", tasks)
				}
			}
			if ok {
				return tasks
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	tr.failIfViolated()
	tr.t.Fatalf("group did not settle on whole tasks over %v within 60s: %s", members, why)
	return nil
}

// TestIntegrationTasks runs three real kgo group members with the task
// balancer and static membership over two topics of four partitions: each
// member runs whole tasks, together all of them, and no task is ever run by
// two members at once; when one leaves, the others keep their tasks and take
// the leaver's whole; when it comes back, one task moves to it.
func TestIntegrationTasks(t *testing.T) {
	if testing.Short() {
		t.Skip("broker integration test; run without -short")
	}
	brokers := testbroker.Brokers(t)
	topics := []string{testbroker.Unique(t, "a"), testbroker.Unique(t, "b")}
	slices.Sort(topics)
	const partitions = 4
	for _, topic := range topics {
		testbroker.CreateTopic(t, brokers, topic, partitions, nil)
	}
	group := testbroker.Unique(t, "g")
	instances := []string{group + "-i0", group + "-i1", group + "-i2"}
	tr := newTracker(t)

	type running struct {
		cl   *kgo.Client
		stop context.CancelFunc
		done chan struct{}
	}
	start := func(instance string) *running {
		cl := testbroker.NewClient(t, brokers,
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topics...),
			kgo.Balancers(balancer.New()),
			kgo.InstanceID(instance),
			kgo.SessionTimeout(6*time.Second),
			kgo.HeartbeatInterval(500*time.Millisecond),
			kgo.RebalanceTimeout(10*time.Second),
			kgo.DisableAutoCommit(),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) { tr.assigned(instance, a) }),
			kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { tr.revoked(instance, r) }),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { tr.revoked(instance, r) }),
		)
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{cl: cl, stop: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			for ctx.Err() == nil {
				cl.PollFetches(ctx)
			}
		}()
		return r
	}
	// leave closes a member and removes it from the group: with static
	// membership kgo sends no LeaveGroup on close (the runtime does the
	// same on shutdown).
	leave := func(instance string, r *running) {
		r.stop()
		<-r.done
		r.cl.Close()
		tr.forget(instance)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := testbroker.Admin(t, brokers).LeaveGroup(ctx, kadm.LeaveGroup(group).InstanceIDs(instance).Reason("test"))
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("LeaveGroup %s: %v", instance, err)
		}
	}

	members := make(map[string]*running)
	for _, id := range instances {
		members[id] = start(id)
	}
	three := tr.waitTasks(topics, partitions, instances)
	t.Logf("three members: %v", three)

	leaver := instances[1]
	leave(leaver, members[leaver])
	rest := []string{instances[0], instances[2]}
	two := tr.waitTasks(topics, partitions, rest)
	t.Logf("after %s left: %v", leaver, two)
	for _, m := range rest {
		for _, p := range three[m] {
			if !slices.Contains(two[m], p) {
				t.Errorf("%s lost task %d when %s left: before %v after %v", m, p, leaver, three, two)
			}
		}
	}

	members[leaver] = start(leaver)
	back := tr.waitTasks(topics, partitions, instances)
	t.Logf("after %s came back: %v", leaver, back)
	movedTasks := 0
	for _, m := range rest {
		for _, p := range two[m] {
			if !slices.Contains(back[m], p) {
				movedTasks++
			}
		}
	}
	if movedTasks != 1 {
		t.Errorf("%d tasks moved when %s came back, want 1: before %v after %v", movedTasks, leaver, two, back)
	}
	tr.failIfViolated()

	for _, id := range slices.Sorted(maps.Keys(members)) {
		members[id].stop()
		<-members[id].done
	}
}
