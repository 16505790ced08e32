package processor

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is where a Processor is in its life, as Kafka Streams'
// KafkaStreams.State. Processor.State returns it; StateListener is told
// every change.
//
// The usual sequence is Created, Starting, Rebalancing (joining the stages'
// groups), Restoring (newly assigned tasks replaying their changelogs),
// Running, and back to Rebalancing and Restoring when partitions move; at
// the end PendingShutdown then Stopped, or Failed when Run returns an error.
// While the global tables bootstrap (before any stage starts) the state is
// Restoring. Stopped and Failed are final.
type State int32

const (
	// StateCreated: New returned; Run has not begun.
	StateCreated State = iota
	// StateStarting: Run is reaching the brokers, preparing the topics and
	// opening the state directory.
	StateStarting
	// StateRebalancing: some stage has no assignment yet, or a rebalance
	// took partitions from it and it has not been told its new assignment.
	StateRebalancing
	// StateRestoring: some stage restores newly assigned tasks from their
	// changelogs (or the global tables bootstrap); those tasks do not
	// process records yet.
	StateRestoring
	// StateRunning: every stage has its assignment and every task it holds
	// is restored and processing.
	StateRunning
	// StatePendingShutdown: Run's context is done (or a stage failed and
	// the others are stopping): the stages end their transactions and
	// leave their groups.
	StatePendingShutdown
	// StateStopped: Run returned nil.
	StateStopped
	// StateFailed: Run returned an error.
	StateFailed
)

var stateNames = [...]string{"created", "starting", "rebalancing", "restoring", "running", "pending_shutdown", "stopped", "failed"}

// String returns the state's name in snake case ("pending_shutdown"), as it
// appears in the sluice_processor_state metric and the admin endpoints.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "unknown"
	}
	return stateNames[s]
}

// StateListener sets a function told of every change of the processor's
// State, in order, none left out. Default: none. Kafka Streams'
// KafkaStreams.setStateListener.
//
// It runs on a goroutine of its own that Run starts, never inside the
// processor's work: the changes happen inside rebalances, which must not
// wait for the application. The changes are queued and delivered one at a
// time in the order they happened, the RestoreListener's events among them;
// a slow listener delays only the listeners, is told every change later,
// and sees Processor.State already past the change it is told of. Run
// returns after the listener was told the final change (to StateStopped or
// StateFailed), so a listener that never returns keeps Run from returning.
func StateListener(fn func(old, new State)) Opt {
	return opt{func(c *cfg) { c.stateListener = fn }}
}

// RestoreListener is told of each task's restore from its changelogs, as
// Kafka Streams' StateRestoreListener (per task rather than per store). A
// task whose restore starts again (its changelog lost records during the
// restore, or a later assignment) is reported again from OnRestoreStart.
//
// Its methods run on the goroutine that delivers the listeners' events
// (see StateListener), never on the one restoring: a restore does not wait
// for them. Per task the calls come in order: OnRestoreStart, any number of
// OnRestoreProgress, OnRestoreEnd. A listener slower than the restore
// misses progress events, never a start or an end: an undelivered
// progress event of a task is replaced by the task's next one.
type RestoreListener interface {
	// OnRestoreStart is called once a restore has decided where each of
	// the task's stores starts, before reading anything.
	OnRestoreStart(RestoreProgress)
	// OnRestoreProgress is called after each batch of changelog records
	// the restore applied to the task.
	OnRestoreProgress(RestoreProgress)
	// OnRestoreEnd is called when the task's restore ended: err is nil when
	// every store reached its target and the task is about to process
	// records, the restore's error otherwise (the task is not run).
	OnRestoreEnd(p RestoreProgress, err error)
}

// WithRestoreListener sets the RestoreListener. Default: none.
func WithRestoreListener(l RestoreListener) Opt {
	return opt{func(c *cfg) { c.restoreListener = l }}
}

// RestoreProgress is where one task's restore is. Offsets count what is left
// to read, so Remaining includes transaction markers and offsets compaction
// removed: it is an upper bound of the records still to replay, and reaches
// zero when the restore ends.
type RestoreProgress struct {
	Stage     string
	Partition int32
	// Restored is the number of changelog offsets read so far; Remaining
	// those still to read up to the targets (the changelogs' high
	// watermarks when the restore began).
	Restored, Remaining int64
	// Elapsed is the time since the restore began.
	Elapsed time.Duration
}

// ETA estimates the time left from the rate so far; zero when nothing is
// left, or when nothing was restored yet to estimate a rate from.
func (r RestoreProgress) ETA() time.Duration {
	if r.Remaining <= 0 || r.Restored <= 0 {
		return 0
	}
	return time.Duration(float64(r.Elapsed) * float64(r.Remaining) / float64(r.Restored))
}

// stagePhase is where one stage is, which the processor's State is made
// from.
type stagePhase int32

const (
	phaseRebalancing stagePhase = iota // no assignment yet, or a revoke told
	phaseRestoring                     // restoring newly assigned tasks
	phaseRunning
)

// lifecycle holds the processor's State. base is the state set by Run
// itself; while it is StateRunning the State is made from the stages'
// phases (derive).
type lifecycle struct {
	mu struct {
		sync.Mutex
		base  State
		state State // the last State told to the listener
	}
	state atomic.Int32 // mirrors mu.state, read without the lock
}

// State returns the processor's current State. Safe to call concurrently
// with Run, also from a StateListener.
func (p *Processor) State() State { return State(p.life.state.Load()) }

// setBase sets the state Run is in. Final states stay; StateRunning means
// "made from the stages' phases".
func (p *Processor) setBase(s State) {
	p.life.mu.Lock()
	defer p.life.mu.Unlock()
	if b := p.life.mu.base; b == StateStopped || b == StateFailed {
		return
	}
	if p.life.mu.base == StatePendingShutdown && s < StatePendingShutdown {
		return
	}
	p.life.mu.base = s
	p.changedLocked()
}

// setPhase records where stage st is and updates the State.
func (p *Processor) setPhase(st *stage, ph stagePhase) {
	p.life.mu.Lock()
	defer p.life.mu.Unlock()
	if st.phase.Swap(int32(ph)) != int32(ph) {
		st.phaseSince.Store(time.Now().UnixNano())
	}
	if ph != phaseRebalancing {
		st.assignedOnce.Store(true)
	}
	p.changedLocked()
}

// changedLocked computes the State and tells the listener if it changed.
// REQUIRES: p.life.mu held.
func (p *Processor) changedLocked() {
	s := p.life.mu.base
	if s == StateRunning {
		s = p.deriveLocked()
	}
	old := p.life.mu.state
	if s == old {
		return
	}
	p.life.mu.state = s
	p.life.state.Store(int32(s))
	p.notify.post(listenerEvent{kind: stateChanged, old: old, new: s})
}

// deriveLocked makes the State from the stages' phases: any stage restoring
// makes it Restoring, else any rebalancing makes it Rebalancing.
// REQUIRES: p.life.mu held.
func (p *Processor) deriveLocked() State {
	s := StateRunning
	for _, st := range p.stages {
		switch stagePhase(st.phase.Load()) {
		case phaseRestoring:
			return StateRestoring
		case phaseRebalancing:
			s = StateRebalancing
		}
	}
	return s
}

// finish sets the final state from Run's error.
func (p *Processor) finish(err error) {
	if err != nil {
		p.setBase(StateFailed)
		return
	}
	p.setBase(StateStopped)
}
