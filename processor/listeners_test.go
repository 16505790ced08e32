package processor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit/testbroker"
)

// stuckListeners are a StateListener and a RestoreListener whose every call
// waits until release is closed, recording what they were told.
type stuckListeners struct {
	release chan struct{}
	mu      sync.Mutex
	states  []string // "old>new"
	restore []string // "start split/0", ...
}

func (l *stuckListeners) onState(old, new State) {
	<-l.release
	l.mu.Lock()
	l.states = append(l.states, old.String()+">"+new.String())
	l.mu.Unlock()
}

func (l *stuckListeners) add(kind string, p RestoreProgress) {
	<-l.release
	l.mu.Lock()
	l.restore = append(l.restore, fmt.Sprintf("%s %s/%d", kind, p.Stage, p.Partition))
	l.mu.Unlock()
}

func (l *stuckListeners) OnRestoreStart(p RestoreProgress)          { l.add("start", p) }
func (l *stuckListeners) OnRestoreProgress(p RestoreProgress)       { l.add("progress", p) }
func (l *stuckListeners) OnRestoreEnd(p RestoreProgress, err error) { l.add("end", p) }
func (l *stuckListeners) told() (states, restore []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.states), slices.Clone(l.restore)
}

// TestListenersDoNotHoldTheProcessor runs the word count on a new state
// directory (so its counting tasks restore) with a StateListener and a
// RestoreListener stuck in their first call: the processor restores and
// processes all the same. Released, the listeners are told every state
// change in order and each task's restore as start, progress..., end; Run
// returns only after the final change to stopped was told.
func TestListenersDoNotHoldTheProcessor(t *testing.T) {
	brokers := testbroker.Brokers(t)
	app := testbroker.Unique(t, "lst")
	input, output := app+"-lines", app+"-counts"
	const parts = 2
	testbroker.CreateTopic(t, brokers, input, parts, nil)
	testbroker.CreateTopic(t, brokers, output, parts, nil)
	lines, _, total := randomLines(5, 200, 20)
	produceLines(t, brokers, input, lines)

	run := func(opts ...Opt) (*Processor, context.CancelFunc, chan error) {
		p, err := New(wordcount(t, input, output), append(testOpts(t, brokers, app), opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		return p, cancel, done
	}
	_, cancel, done := run()
	if got := waitRecords(t, brokers, output, total, 2*time.Minute); got < total {
		cancel()
		t.Fatalf("first run: %d of %d counts (Run: %v)", got, total, <-done)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}

	l := &stuckListeners{release: make(chan struct{})}
	p, cancel, done := run(StateListener(l.onState), WithRestoreListener(l))
	released := sync.OnceFunc(func() { close(l.release) })
	defer func() {
		released()
		cancel()
		<-done
	}()
	more, _, moreTotal := randomLines(6, 100, 20)
	produceLines(t, brokers, input, more)
	if got := waitRecords(t, brokers, output, total+moreTotal, 2*time.Minute); got < total+moreTotal {
		t.Fatalf("with the listeners stuck: %d of %d counts (state %v)", got, total+moreTotal, p.State())
	}
	waitFor(t, time.Minute, "the state running", func() bool { return p.State() == StateRunning })
	if states, restore := l.told(); len(states)+len(restore) != 0 {
		t.Fatalf("stuck listeners were told %v %v", states, restore)
	}

	released()
	cancel()
	err := <-done
	done <- nil // for the deferred wait
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	states, restore := l.told()
	// In order: each change starts where the one before ended, from
	// created to stopped.
	prev := StateCreated.String()
	for _, s := range states {
		old, new, _ := strings.Cut(s, ">")
		if old != prev {
			t.Errorf("state changes %v: %s does not follow %s", states, s, prev)
		}
		prev = new
	}
	if prev != StateStopped.String() || !slices.Contains(states, "restoring>running") {
		t.Errorf("state changes when Run returned = %v, want created ... restoring>running ... stopped", states)
	}
	byTask := map[string][]string{}
	for _, e := range restore {
		kind, task, _ := strings.Cut(e, " ")
		byTask[task] = append(byTask[task], kind)
	}
	if len(byTask) != parts {
		t.Errorf("restore events for %d tasks, want %d: %v", len(byTask), parts, restore)
	}
	for task, kinds := range byTask {
		if len(kinds) < 2 || kinds[0] != "start" || kinds[len(kinds)-1] != "end" || slices.Contains(kinds[1:len(kinds)-1], "start") || slices.Contains(kinds[:len(kinds)-1], "end") {
			t.Errorf("task %s: events %v, want start, progress..., end", task, kinds)
		}
	}
}

// TestNotifierKeepsLatestProgress: while the listener is busy, a task's
// undelivered progress event is replaced by its next one, in its place;
// starts, ends and state changes all arrive, in order.
func TestNotifierKeepsLatestProgress(t *testing.T) {
	l := &stuckListeners{release: make(chan struct{})}
	n := newNotifier(l.onState, l)
	go n.deliver()
	n.post(listenerEvent{kind: stateChanged, old: StateCreated, new: StateStarting}) // the listener sticks in this one
	a := func(restored int64) RestoreProgress {
		return RestoreProgress{Stage: "s", Partition: 0, Restored: restored}
	}
	b := RestoreProgress{Stage: "s", Partition: 1}
	n.post(listenerEvent{kind: restoreStarted, progress: a(0)})
	n.post(listenerEvent{kind: restoreStarted, progress: b})
	for i := int64(1); i <= 100; i++ {
		n.post(listenerEvent{kind: restoreProgressed, progress: a(i)})
	}
	n.post(listenerEvent{kind: restoreProgressed, progress: b})
	n.post(listenerEvent{kind: restoreEnded, progress: a(100)})
	n.post(listenerEvent{kind: restoreProgressed, progress: a(101)}) // after the end: not merged into the one before it
	n.post(listenerEvent{kind: stateChanged, old: StateStarting, new: StateRunning})
	close(l.release)
	n.close()
	n.post(listenerEvent{kind: stateChanged, old: StateRunning, new: StateStopped}) // after close: dropped
	states, restore := l.told()
	if want := []string{"created>starting", "starting>running"}; !slices.Equal(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
	want := []string{"start s/0", "start s/1", "progress s/0", "progress s/1", "end s/0", "progress s/0"}
	if !slices.Equal(restore, want) {
		t.Errorf("restore events = %v, want %v", restore, want)
	}
}
