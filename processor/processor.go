package processor

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kgox"
	"github.com/sluicehq/sluice/internal/state"
	"github.com/sluicehq/sluice/internal/topology"
	"github.com/sluicehq/sluice/stream"
)

// Processor runs a built topology against Kafka. Create it with New and run it
// with Run; a Processor runs once.
type Processor struct {
	topo   *stream.Topology
	cfg    cfg
	stages []*stage
	now    func() time.Time
	hooks  hooks

	runOnce sync.Once

	// globals are the instance's copies of the global tables (global.go).
	globals []*globalTable

	// userLogger is the franz-go logger given with KafkaOptions, if any.
	userLogger kgo.Logger

	// life is the processor's State (lifecycle.go).
	life lifecycle
	// notify delivers the StateListener's and RestoreListener's events
	// (listeners.go).
	notify *notifier
	// metricsReg is where the metrics are registered (wrapped with the
	// application and instance labels), nil without metrics; gatherer
	// serves them on the admin server's /metrics, nil when the
	// application's Registerer is not a Gatherer.
	metricsReg prometheus.Registerer
	gatherer   prometheus.Gatherer
	// adminAddr is the admin server's listening address (a string) while
	// it listens.
	adminAddr atomic.Value
	// db is the open state, for the Pebble metrics.
	db struct {
		mu struct {
			sync.RWMutex
			db *state.DB // nil while not open
		}
	}
}

// hooks let tests stop a stage at the moments that matter.
type hooks struct {
	// afterCommit runs after a transaction committed on the broker and
	// before its batches are applied. An error stops the stage without
	// applying: a crash between the Kafka commit and the Pebble apply.
	afterCommit func(st *stage) error
	// afterApply runs after a committed transaction's batches were applied.
	afterApply func(st *stage, applied []*task)
	// restoreProgressed runs on the restoring goroutine after each batch
	// of changelog records a restore applied (a test holds a restore
	// there).
	restoreProgressed func(st *stage)
}

// New checks the options against the topology and returns a Processor. It
// does not contact Kafka: Run does. Every configuration error is returned at
// once, wrapping ErrConfig.
func New(t *stream.Topology, opts ...Opt) (*Processor, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: nil topology: build one with stream.NewBuilder()...Build()", ErrConfig)
	}
	c := defaultCfg()
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	var names []string
	for _, s := range t.Stages() {
		names = append(names, s.Name)
	}
	if err := c.validate(names); err != nil {
		return nil, err
	}
	if err := t.Validate(c.app); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	p := &Processor{topo: t, cfg: c, now: time.Now, userLogger: userKgoLogger(c.kgoOpts),
		notify: newNotifier(c.stateListener, c.restoreListener)}
	for _, spec := range topology.Of(t).Stages {
		p.stages = append(p.stages, newStage(p, spec))
	}
	p.globals = newGlobals(p, t)
	reg := c.registerer
	if reg == nil && c.adminAddr != "" {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	if g, ok := reg.(prometheus.Gatherer); ok {
		p.gatherer = g
	}
	if reg != nil {
		if err := p.registerMetrics(reg); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// InstanceID returns the instance id in use (the default one derived from the
// host name and state directory, when none was set).
func (p *Processor) InstanceID() string { return p.cfg.instanceID }

// Run runs the topology until ctx is done, then ends every stage's open
// transaction (committing what was processed), applies what committed, leaves
// the consumer groups (unless RollingRestart), closes the state and returns
// nil. It returns an error when the brokers cannot be reached within the
// startup timeout (ErrUnreachable), when a topic is missing or mis-sized
// (ErrConfig), when the state directory is in use (ErrStateLocked), or when
// a stage stops: a record the Fail policy refused (*RecordError), or an
// unrecoverable Kafka error. With a StateListener or RestoreListener, it
// returns after they were told every event, the final State last.
func (p *Processor) Run(ctx context.Context) error {
	err := errors.New("processor: a Processor runs only once; create a new one")
	p.runOnce.Do(func() {
		if p.notify.active() {
			go p.notify.deliver()
			// After run's final State: the listeners are told
			// everything before Run returns.
			defer p.notify.close()
		}
		err = p.run(ctx)
	})
	return err
}

func (p *Processor) run(ctx context.Context) (err error) {
	p.setBase(StateStarting)
	defer func() { p.finish(err) }()
	if p.cfg.adminAddr != "" {
		stopAdmin, err := p.serveAdmin(p.cfg.adminAddr)
		if err != nil {
			return err
		}
		defer stopAdmin()
	}
	adminCl, err := p.cfg.newClient(p.cfg.logger)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)

	sctx, cancel := context.WithTimeout(ctx, p.cfg.startupTimeout)
	defer cancel()
	if err := adminCl.Ping(sctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if fix, guess := kgox.ConnectFix("processor", err); fix != "" && !guess {
			return fmt.Errorf("%w: connecting to %v: %w: %s", ErrConfig, p.cfg.brokers, err, fix)
		} else if fix != "" {
			return fmt.Errorf("%w: %v: %w: %s", ErrUnreachable, p.cfg.brokers, err, fix)
		}
		return fmt.Errorf("%w: no answer from %v within %v: %w", ErrUnreachable, p.cfg.brokers, p.cfg.startupTimeout, err)
	}

	db, err := p.openState()
	if err != nil {
		return err
	}
	p.db.mu.Lock()
	p.db.mu.db = db
	p.db.mu.Unlock()
	defer func() {
		p.db.mu.Lock()
		p.db.mu.db = nil
		p.db.mu.Unlock()
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing state: %w", cerr)
		}
	}()

	for _, st := range p.stages {
		st.db = db
	}
	// Preparing the topics is idempotent: a failure that is not the
	// configuration's (a broker restarting, a connection refused) is
	// retried until the startup timeout.
	for {
		err := p.prepareTopics(sctx, adm)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if sctx.Err() != nil {
			return fmt.Errorf("%w: preparing topics took longer than %v: %w", ErrUnreachable, p.cfg.startupTimeout, err)
		}
		if errors.Is(err, ErrConfig) || startupFatal(err) {
			return err
		}
		p.cfg.logger.Warn("preparing topics failed; retrying", "err", err)
		select {
		case <-sctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	cancel()
	// Global tables catch up before any stage starts (global.go).
	if len(p.globals) > 0 {
		p.setBase(StateRestoring)
	}
	if err := p.bootstrapGlobals(ctx, adm, db); err != nil {
		p.closeGlobals()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	p.cfg.logger.Info("processor starting", "app", p.cfg.app, "instance", p.cfg.instanceID, "stages", len(p.stages))
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	p.setBase(StateRunning) // from here on, made from the stages' phases
	go func() {
		<-rctx.Done()
		p.setBase(StatePendingShutdown)
	}()
	purged := make(chan error, 1)
	go func() {
		err := p.purgeRepartitions(rctx, adm, p.cfg.purgeInterval)
		if err != nil {
			stop() // a refused purge stops the processor, as a failing stage does
		}
		purged <- err
	}()
	waitGlobals := p.followGlobals(rctx, stop)
	errs := make(chan error, len(p.stages))
	for _, st := range p.stages {
		go func() {
			err := st.run(rctx)
			if err != nil {
				stop() // one failing stage stops the processor
			}
			errs <- err
		}()
	}
	var runErr error
	for range p.stages {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
		}
	}
	stop()
	if err := <-purged; err != nil && runErr == nil {
		runErr = err
	}
	if err := waitGlobals(); err != nil && runErr == nil {
		runErr = err
	}
	if !p.cfg.rollingRestart {
		p.leaveGroups(adm)
	}
	p.cfg.logger.Info("processor stopped", "app", p.cfg.app, "err", runErr)
	return runErr
}

// openState opens the instance's Pebble state, <state dir>/<app>.
func (p *Processor) openState() (*state.DB, error) {
	return state.Open(filepath.Join(p.cfg.stateDir, p.cfg.app), state.CacheSize(p.cfg.stateCache))
}

// leaveGroups removes this instance from every stage's group. With static
// membership franz-go sends no LeaveGroup on close, and the partitions would
// wait for the session timeout.
func (p *Processor) leaveGroups(adm *kadm.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, st := range p.stages {
		resp, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(st.group).InstanceIDs(p.cfg.instanceID).Reason("sluice processor shutting down"))
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			p.cfg.logger.Warn("leaving group", "group", st.group, "err", err)
		}
	}
}

// Metrics is a snapshot of what a Processor did, per stage.
type Metrics struct {
	Stages map[string]StageMetrics
	// Global holds the metrics of each global table, by name.
	Global map[string]GlobalMetrics
}

// StageMetrics counts one stage's work since Run began.
type StageMetrics struct {
	Records         int64 // input records in committed transactions
	Emitted         int64 // output records (to sinks and repartition topics) in committed transactions
	Commits         int64 // committed transactions
	Aborts          int64 // transactions aborted (rebalance, bad record, failed produce)
	Skipped         int64 // records the Skip policy dropped
	DeadLettered    int64 // records the DeadLetter policy sent to the dead-letter topic
	Failed          int64 // records that stopped the stage under the Fail policy
	Restarts        int64 // client restarts after an unknown transaction outcome or a failed produce
	LostCycles      int64 // at-most-once cycles whose produce failed after their offsets were committed: their records are lost
	RestoredRecords int64 // changelog records replayed into local state
	Rebuilds        int64 // tasks whose local state was wiped and rebuilt from the changelog's start
	// TransientAborts counts the exactly-once transactions aborted while
	// the brokers could not take them, and that the stage settled without a
	// restart: their records were not acknowledged within half the
	// transaction timeout, or a retriable produce error outlived its
	// retries, or End failed after deciding not to commit (a broker failing
	// over, a coordinator moving, an overloaded cluster). The stage
	// processes their records again. Each is counted
	// in Aborts too. A steady rise means transactions keep failing to flush
	// within half the transaction timeout (docs/operations.md).
	TransientAborts int64
	// RestoreTime is the wall time spent restoring newly assigned tasks
	// (waiting for the changelogs' stable end, replaying, applying with the
	// checkpoint), summed over assignments; it grows when a restore ends,
	// successful or not.
	RestoreTime time.Duration
	// Late counts the records dropped as late: input records that arrived
	// after every window that could take them had closed
	// (stream.ErrLateRecord), which also go to the error policy (so each is
	// also counted in Skipped, DeadLettered or Failed); and records emitted
	// by a stream-time hook (a window released by suppression, an unpaired
	// join result) that a windowed operator or join downstream in the same
	// stage found late, which are dropped without failing anything.
	Late int64
	// NullKeys counts the records that failed because their key was null
	// where a key is needed (stream.ErrNullKey: a table source, an
	// aggregation, a grouping, a store write). Like Late, each is also
	// counted in Skipped, DeadLettered or Failed.
	NullKeys int64
	// TimerErrors counts the wall-clock timer calls (stream.Every) that
	// failed: under the Fail policy the first stops the stage; under Skip
	// and DeadLetter each is logged and its effects are dropped.
	TimerErrors int64
	// CommitTime is the wall time spent ending cycles: producing the
	// changelogs, waiting for every produced record's acknowledgement, and
	// committing (exactly-once: the transaction's offset commit and EndTxn
	// round trips; at-least-once: the offset commit after the flush;
	// at-most-once: the offset commits before processing each poll). The
	// stage processes no record meanwhile.
	CommitTime time.Duration
	// ApplyTime is the wall time spent applying committed cycles' state
	// changes and checkpoints to Pebble.
	ApplyTime time.Duration
	// IdleTime is the wall time the stage's polls spent waiting for input
	// records to arrive. A stage that keeps up with live input spends much
	// of each commit interval waiting; one that works through a backlog
	// hardly waits at all (and then gathers for the whole commit interval,
	// see CommitInterval).
	IdleTime time.Duration
}

// Metrics returns a snapshot of the processor's counters. Safe to call
// concurrently with Run.
func (p *Processor) Metrics() Metrics {
	m := Metrics{Stages: map[string]StageMetrics{}, Global: p.globalMetricsSnapshot()}
	for _, st := range p.stages {
		m.Stages[st.name] = StageMetrics{
			Records:         st.metrics.records.Load(),
			Emitted:         st.metrics.emitted.Load(),
			Commits:         st.metrics.commits.Load(),
			Aborts:          st.metrics.aborts.Load(),
			TransientAborts: st.metrics.transientAborts.Load(),
			Skipped:         st.metrics.skipped.Load(),
			DeadLettered:    st.metrics.deadLettered.Load(),
			Failed:          st.metrics.failed.Load(),
			Late:            st.metrics.late.Load(),
			NullKeys:        st.metrics.nullKeys.Load(),
			TimerErrors:     st.metrics.punctFailed.Load(),
			Restarts:        st.metrics.restarts.Load(),
			LostCycles:      st.metrics.lostCycles.Load(),
			RestoredRecords: st.metrics.restored.Load(),
			Rebuilds:        st.metrics.rebuilds.Load(),
			RestoreTime:     time.Duration(st.metrics.restoreNanos.Load()),
			CommitTime:      time.Duration(st.metrics.commitNanos.Load()),
			ApplyTime:       time.Duration(st.metrics.applyNanos.Load()),
			IdleTime:        time.Duration(st.metrics.idleNanos.Load()),
		}
	}
	return m
}
