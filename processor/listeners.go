package processor

import (
	"sync"
)

// The StateListener and the RestoreListener are the user's code, and the
// changes they are told of happen inside franz-go's rebalance callbacks
// (onSync, onRevoked, the restore in AdjustFetchOffsetsFn) and under the
// processor's lifecycle lock. Calling them there would let a slow listener
// hold a rebalance, and a listener that waits for the processor deadlock it.
// So the processor only queues the events, and one goroutine per Run
// delivers them, in order.
//
// A queue that a stuck listener lets grow holds at most one progress event
// per task (a newer progress replaces the undelivered one, in its place):
// the events that must all arrive (state changes, restore starts and ends)
// are few, one per rebalance or restore, and are never dropped.

// listenerEvent is one call owed to a listener.
type listenerEvent struct {
	kind     listenerEventKind
	old, new State
	progress RestoreProgress
	err      error
}

type listenerEventKind int8

const (
	stateChanged listenerEventKind = iota
	restoreStarted
	restoreProgressed
	restoreEnded
)

// taskKey names a task in the queue's index of progress events.
type taskKey struct {
	stage     string
	partition int32
}

// notifier queues the listeners' events and delivers them on its own
// goroutine (deliver), in the order they were queued.
type notifier struct {
	state   func(old, new State) // nil: no StateListener
	restore RestoreListener      // nil: no RestoreListener

	mu struct {
		sync.Mutex
		queue []listenerEvent
		// progress indexes the undelivered progress event of each
		// task in queue, which a newer one replaces; a start or end
		// of the task removes the entry (a progress never moves past
		// them).
		progress map[taskKey]int
		closed   bool // close was called: nothing more is queued
	}
	wake chan struct{} // capacity 1: the queue may have grown
	done chan struct{} // closed when deliver returned
}

func newNotifier(state func(old, new State), restore RestoreListener) *notifier {
	n := &notifier{state: state, restore: restore, wake: make(chan struct{}, 1), done: make(chan struct{})}
	n.mu.progress = map[taskKey]int{}
	return n
}

// active reports whether there is a listener to tell anything.
func (n *notifier) active() bool { return n != nil && (n.state != nil || n.restore != nil) }

// post queues e. It never blocks for long (a mutex held only to append)
// and never waits for the listeners: safe inside rebalance callbacks and
// under the lifecycle lock. Events posted after close are dropped.
func (n *notifier) post(e listenerEvent) {
	if !n.active() || (e.kind == stateChanged && n.state == nil) || (e.kind != stateChanged && n.restore == nil) {
		return
	}
	n.mu.Lock()
	if n.mu.closed {
		n.mu.Unlock()
		return
	}
	key := taskKey{e.progress.Stage, e.progress.Partition}
	switch e.kind {
	case restoreProgressed:
		if i, ok := n.mu.progress[key]; ok {
			n.mu.queue[i] = e
			n.mu.Unlock()
			return
		}
		n.mu.progress[key] = len(n.mu.queue)
	case restoreStarted, restoreEnded:
		delete(n.mu.progress, key)
	}
	n.mu.queue = append(n.mu.queue, e)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// deliver calls the listeners with the queued events, in order, until
// close was called and the queue is empty. Run starts it on a goroutine of
// its own.
func (n *notifier) deliver() {
	defer close(n.done)
	for {
		n.mu.Lock()
		batch, closed := n.mu.queue, n.mu.closed
		n.mu.queue = nil
		clear(n.mu.progress)
		n.mu.Unlock()
		for _, e := range batch {
			n.call(e)
		}
		if len(batch) > 0 {
			continue
		}
		if closed {
			return
		}
		<-n.wake
	}
}

func (n *notifier) call(e listenerEvent) {
	switch e.kind {
	case stateChanged:
		n.state(e.old, e.new)
	case restoreStarted:
		n.restore.OnRestoreStart(e.progress)
	case restoreProgressed:
		n.restore.OnRestoreProgress(e.progress)
	case restoreEnded:
		n.restore.OnRestoreEnd(e.progress, e.err)
	}
}

// close stops the queue taking events and waits until deliver has told
// the listeners every event queued before.
func (n *notifier) close() {
	if !n.active() {
		return
	}
	n.mu.Lock()
	n.mu.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}
