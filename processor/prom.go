package processor

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// MetricsRegisterer registers the processor's Prometheus metrics (see
// docs/operations.md for the list) with reg: per stage counters and
// histograms, per task lag and restore progress, the global tables', the
// state directory's Pebble metrics, the processor's State, and franz-go's
// client metrics (plugin/kprom, prefixed sluice_kafka_) for each stage's
// client. Every metric carries the labels application and instance.
//
// Default: none registered; the counters stay readable with
// Processor.Metrics. With AdminAddr and no MetricsRegisterer, the admin
// server registers them with a registry of its own. New fails with ErrConfig
// when reg refuses them (another Processor with the same application and
// instance id registered there already).
//
// Cost: counters are read when scraped; the histograms are observed once per
// transaction, never per record.
func MetricsRegisterer(reg prometheus.Registerer) Opt {
	return opt{func(c *cfg) { c.registerer = reg }}
}

// Histogram buckets, in seconds or records.
var (
	durationBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)  // 1 ms .. 33 s
	applyBuckets    = prometheus.ExponentialBuckets(0.0001, 2, 16) // 0.1 ms .. 3.3 s
	recordBuckets   = prometheus.ExponentialBuckets(1, 4, 10)      // 1 .. 262144
	latencyBuckets  = prometheus.ExponentialBuckets(0.001, 2, 18)  // 1 ms .. 131 s
)

// stageObs holds one stage's histograms, their labels bound once.
type stageObs struct {
	cycle, commit, apply, txnRecords, e2e prometheus.Observer
}

// metricsSet is what a processor registered.
type metricsSet struct {
	reg prometheus.Registerer // wrapped with application and instance
}

// registerMetrics registers the processor's metrics with reg. Called by New.
func (p *Processor) registerMetrics(reg prometheus.Registerer) error {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"application": p.cfg.app, "instance": p.cfg.instanceID}, reg)
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "sluice", Name: name, Help: help, Buckets: buckets}, []string{"stage", "guarantee"})
	}
	cycle := hist("cycle_duration_seconds", "Wall time of each cycle that began a transaction (or, at-least-once and at-most-once, processed records): gathering, processing, ending and applying.", durationBuckets)
	commit := hist("commit_duration_seconds", "Wall time of ending each cycle: producing the changelogs, flushing, committing the offsets and EndTxn (exactly-once).", durationBuckets)
	apply := hist("apply_duration_seconds", "Wall time of applying each committed cycle's state changes and checkpoints to Pebble.", applyBuckets)
	txnRecords := hist("transaction_records", "Input records per committed transaction (cycle).", recordBuckets)
	e2e := hist("end_to_end_latency_seconds", "Per committed transaction, the time from the oldest input record's timestamp to the commit: the largest end-to-end latency of the transaction's records.", latencyBuckets)
	var errs []error
	for _, c := range []prometheus.Collector{cycle, commit, apply, txnRecords, e2e, &collector{p: p}} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: registering the Prometheus metrics of application %q, instance %q: %w (give each Processor its own registry, or a distinct instance id)", ErrConfig, p.cfg.app, p.cfg.instanceID, err)
	}
	for _, st := range p.stages {
		l := []string{st.name, st.cfg.guarantee.String()}
		st.metrics.obs = &stageObs{
			cycle:      cycle.WithLabelValues(l...),
			commit:     commit.WithLabelValues(l...),
			apply:      apply.WithLabelValues(l...),
			txnRecords: txnRecords.WithLabelValues(l...),
			e2e:        e2e.WithLabelValues(l...),
		}
		st.kprom = prometheus.WrapRegistererWith(prometheus.Labels{"stage": st.name}, reg)
	}
	p.metricsReg = reg
	return nil
}

// kpromHooks returns the hook that gives franz-go's Prometheus metrics of a
// stage's client, or none without metrics. Each client registers its
// metrics when it is made and unregisters them when it is closed, so a
// stage's restarted client starts them from zero.
func (st *stage) kpromHooks() []kgo.Hook {
	if st.kprom == nil {
		return nil
	}
	return []kgo.Hook{kprom.NewMetrics("sluice_kafka", kprom.Registerer(lenientRegisterer{st.kprom, st.log}),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes))}
}

// syncPhaseLocked returns the stage's phase after an assignment held:
// restoring when it holds a partition it has no task for yet (its restore
// follows), running otherwise.
// REQUIRES: st.mu held.
func (st *stage) syncPhaseLocked(held map[string]map[int32]bool) stagePhase {
	for _, ps := range held {
		for p := range ps {
			if st.mu.tasks[p] == nil || st.mu.revoked[p] {
				return phaseRestoring
			}
		}
	}
	return phaseRunning
}

// lenientRegisterer logs a registration that fails instead of panicking:
// kprom registers with MustRegister when a client is created, and a metrics
// clash must not stop the stage.
type lenientRegisterer struct {
	prometheus.Registerer
	log *slog.Logger
}

func (r lenientRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			r.log.Warn("registering a franz-go client metric failed", "err", err)
		}
	}
}

// ended notes the time a cycle took to end (commit latency).
func (m *stageMetrics) ended(d time.Duration) {
	m.commitNanos.Add(int64(d))
	if m.obs != nil {
		m.obs.commit.Observe(d.Seconds())
	}
}

// applied notes the time a committed cycle's apply took.
func (m *stageMetrics) applied(d time.Duration) {
	m.applyNanos.Add(int64(d))
	if m.obs != nil {
		m.obs.apply.Observe(d.Seconds())
	}
}

// committed counts a committed cycle of n input records that emitted
// emitted records, and observes its size and end-to-end latency.
func (m *stageMetrics) committed(n int, emitted int64) {
	now := time.Now()
	m.commits.Add(1)
	m.records.Add(int64(n))
	m.emitted.Add(emitted)
	m.lastCommit.Store(now.UnixNano())
	if m.obs != nil {
		m.obs.txnRecords.Observe(float64(n))
		if m.oldestInput != 0 {
			m.obs.e2e.Observe(float64(now.UnixNano()-m.oldestInput) / 1e9)
		}
	}
	m.oldestInput = 0
}

// noteInput notes an input record's timestamp (loop only): the oldest of a
// cycle gives its end-to-end latency.
func (m *stageMetrics) noteInput(ts time.Time) {
	if m.obs == nil {
		return
	}
	if n := ts.UnixNano(); m.oldestInput == 0 || n < m.oldestInput {
		m.oldestInput = n
	}
}

// cycleDone observes the duration of a cycle that began at started.
func (m *stageMetrics) cycleDone(started time.Time) {
	m.oldestInput = 0
	if m.obs != nil {
		m.obs.cycle.Observe(time.Since(started).Seconds())
	}
}
