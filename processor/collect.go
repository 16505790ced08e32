package processor

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector reads the processor's counters, tasks and Pebble's metrics when
// Prometheus scrapes: nothing is paid for them on the records' path.
type collector struct{ p *Processor }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("sluice_"+name, help, labels, nil)
}

var (
	stageLabels = []string{"stage", "guarantee"}
	taskLabels  = []string{"stage", "partition"}

	// The counters of StageMetrics, in its order.
	stageCounterDescs = []struct {
		d    *prometheus.Desc
		read func(StageMetrics) float64
	}{
		{desc("stage_records_total", "Input records in committed transactions (cycles).", stageLabels...), func(m StageMetrics) float64 { return float64(m.Records) }},
		{desc("stage_emitted_records_total", "Output records (to sinks and repartition topics) in committed transactions.", stageLabels...), func(m StageMetrics) float64 { return float64(m.Emitted) }},
		{desc("stage_commits_total", "Committed transactions (cycles).", stageLabels...), func(m StageMetrics) float64 { return float64(m.Commits) }},
		{desc("stage_aborts_total", "Aborted transactions (rebalance, bad record, failed produce).", stageLabels...), func(m StageMetrics) float64 { return float64(m.Aborts) }},
		{desc("stage_skipped_records_total", "Records the Skip policy dropped.", stageLabels...), func(m StageMetrics) float64 { return float64(m.Skipped) }},
		{desc("stage_dead_lettered_records_total", "Records the DeadLetter policy sent to the dead-letter topic.", stageLabels...), func(m StageMetrics) float64 { return float64(m.DeadLettered) }},
		{desc("stage_failed_records_total", "Records that stopped the stage under the Fail policy.", stageLabels...), func(m StageMetrics) float64 { return float64(m.Failed) }},
		{desc("stage_restarts_total", "Client restarts after an unknown transaction outcome or a failed produce.", stageLabels...), func(m StageMetrics) float64 { return float64(m.Restarts) }},
		{desc("stage_lost_cycles_total", "At-most-once cycles whose produce failed after their offsets were committed.", stageLabels...), func(m StageMetrics) float64 { return float64(m.LostCycles) }},
		{desc("stage_restored_records_total", "Changelog records replayed into local state.", stageLabels...), func(m StageMetrics) float64 { return float64(m.RestoredRecords) }},
		{desc("stage_rebuilds_total", "Tasks whose local state was wiped and rebuilt from the changelog's start.", stageLabels...), func(m StageMetrics) float64 { return float64(m.Rebuilds) }},
		{desc("stage_transient_aborts_total", "Exactly-once transactions aborted, without a restart, while the brokers could not take them (a broker failing over); also in stage_aborts_total.", stageLabels...), func(m StageMetrics) float64 { return float64(m.TransientAborts) }},
		{desc("stage_late_records_total", "Records dropped as late (see StageMetrics.Late).", stageLabels...), func(m StageMetrics) float64 { return float64(m.Late) }},
		{desc("stage_null_key_records_total", "Records that failed for a null key where one is needed.", stageLabels...), func(m StageMetrics) float64 { return float64(m.NullKeys) }},
		{desc("stage_timer_errors_total", "Wall-clock timer calls that failed.", stageLabels...), func(m StageMetrics) float64 { return float64(m.TimerErrors) }},
		{desc("stage_restore_seconds_total", "Wall time spent restoring newly assigned tasks.", stageLabels...), func(m StageMetrics) float64 { return m.RestoreTime.Seconds() }},
		{desc("stage_commit_seconds_total", "Wall time spent ending cycles (see StageMetrics.CommitTime).", stageLabels...), func(m StageMetrics) float64 { return m.CommitTime.Seconds() }},
		{desc("stage_apply_seconds_total", "Wall time spent applying committed cycles to Pebble.", stageLabels...), func(m StageMetrics) float64 { return m.ApplyTime.Seconds() }},
		{desc("stage_idle_seconds_total", "Wall time the stage's polls waited for input records.", stageLabels...), func(m StageMetrics) float64 { return m.IdleTime.Seconds() }},
	}

	stageTasksDesc      = desc("stage_tasks", "Tasks (input partitions) the stage holds on this instance.", stageLabels...)
	stageLastCommitDesc = desc("stage_last_commit_timestamp_seconds", "Unix time of the stage's last committed cycle; 0 before the first.", stageLabels...)

	lagRecordsDesc = desc("task_lag_records", "Records the task has yet to poll: the input's last stable offset (high watermark for non-transactional reads) at the last fetch, minus the offset after the last polled record, summed over the stage's inputs. On transactional input the commit marker after a polled transaction counts as read (docs/operations.md).", taskLabels...)
	lagSecondsDesc = desc("task_lag_seconds", "How old the newest record of the task's last poll was when it was polled (poll time minus record timestamp), the largest over the stage's inputs: the time the task reads behind its input.", taskLabels...)
	lastApplyDesc  = desc("task_last_commit_timestamp_seconds", "Unix time at which a committed cycle last changed the task (its offsets, state or checkpoint); 0 before the first.", taskLabels...)

	restoreRestoredDesc  = desc("restore_restored_offsets", "Changelog offsets the task's running restore has read.", taskLabels...)
	restoreRemainingDesc = desc("restore_remaining_offsets", "Changelog offsets the task's running restore has yet to read (an upper bound of the records).", taskLabels...)
	restoreETADesc       = desc("restore_eta_seconds", "Estimated time left for the task's running restore, from its rate so far; 0 until it has read something.", taskLabels...)

	globalRestoredDesc  = desc("global_restored_records_total", "Records read into the global table's copy during the bootstrap.", "table")
	globalUpdatesDesc   = desc("global_updates_total", "Records applied to the global table's copy while following its topic.", "table")
	globalRebuildsDesc  = desc("global_rebuilds_total", "Bootstraps that wiped the global table's copy and read its topic from the start.", "table")
	globalBootstrapDesc = desc("global_bootstrap_seconds", "Wall time the global table's bootstrap took.", "table")

	stateDesc = desc("processor_state", "1 for the processor's current State (label state), 0 for the others.", "state")

	pebbleDiskDesc        = desc("pebble_disk_usage_bytes", "Disk space the state directory's Pebble uses (Pebble's Metrics.DiskSpaceUsage).")
	pebbleReadAmpDesc     = desc("pebble_read_amplification", "Pebble's read amplification: the sublevels of L0 plus the non-empty lower levels.")
	pebbleCompactionsDesc = desc("pebble_compactions_total", "Compactions Pebble ran since the state directory was opened.")
	pebbleCompactDebtDesc = desc("pebble_compaction_debt_bytes", "Pebble's estimate of the bytes compaction must rewrite to settle the LSM.")
	pebbleFlushesDesc     = desc("pebble_flushes_total", "Memtable flushes since the state directory was opened.")
	pebbleMemtableDesc    = desc("pebble_memtable_bytes", "Bytes in Pebble's memtables.")
	pebbleCacheDesc       = desc("pebble_block_cache_bytes", "Bytes in Pebble's block cache.")
	pebbleCacheHitsDesc   = desc("pebble_block_cache_hits_total", "Block cache hits.")
	pebbleCacheMissDesc   = desc("pebble_block_cache_misses_total", "Block cache misses.")
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range stageCounterDescs {
		ch <- s.d
	}
	for _, d := range []*prometheus.Desc{stageTasksDesc, stageLastCommitDesc, lagRecordsDesc, lagSecondsDesc, lastApplyDesc,
		restoreRestoredDesc, restoreRemainingDesc, restoreETADesc,
		globalRestoredDesc, globalUpdatesDesc, globalRebuildsDesc, globalBootstrapDesc, stateDesc,
		pebbleDiskDesc, pebbleReadAmpDesc, pebbleCompactionsDesc, pebbleCompactDebtDesc, pebbleFlushesDesc, pebbleMemtableDesc,
		pebbleCacheDesc, pebbleCacheHitsDesc, pebbleCacheMissDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	p := c.p
	m := p.Metrics()
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for _, st := range p.stages {
		sm := m.Stages[st.name]
		g := st.cfg.guarantee.String()
		for _, s := range stageCounterDescs {
			counter(s.d, s.read(sm), st.name, g)
		}
		gauge(stageLastCommitDesc, unixSeconds(st.metrics.lastCommit.Load()), st.name, g)
		tasks := st.taskStatuses(time.Now())
		gauge(stageTasksDesc, float64(len(tasks)), st.name, g)
		for _, t := range tasks {
			part := strconv.Itoa(int(t.Partition))
			gauge(lagRecordsDesc, float64(t.LagRecords), st.name, part)
			gauge(lagSecondsDesc, t.LagTime.Seconds(), st.name, part)
			gauge(lastApplyDesc, unixSeconds(t.LastCommit.UnixNano()), st.name, part)
			if r := t.Restore; r != nil {
				gauge(restoreRestoredDesc, float64(r.Restored), st.name, part)
				gauge(restoreRemainingDesc, float64(r.Remaining), st.name, part)
				gauge(restoreETADesc, r.ETA().Seconds(), st.name, part)
			}
		}
	}
	for name, gm := range m.Global {
		counter(globalRestoredDesc, float64(gm.Restored), name)
		counter(globalUpdatesDesc, float64(gm.Updates), name)
		counter(globalRebuildsDesc, float64(gm.Rebuilds), name)
		gauge(globalBootstrapDesc, gm.BootstrapTime.Seconds(), name)
	}
	cur := p.State()
	for s := StateCreated; s <= StateFailed; s++ {
		v := 0.0
		if s == cur {
			v = 1
		}
		gauge(stateDesc, v, s.String())
	}
	p.db.mu.RLock()
	defer p.db.mu.RUnlock()
	if p.db.mu.db == nil {
		return
	}
	pm := p.db.mu.db.Metrics()
	if pm == nil {
		return
	}
	gauge(pebbleDiskDesc, float64(pm.DiskSpaceUsage()))
	gauge(pebbleReadAmpDesc, float64(pm.ReadAmp()))
	counter(pebbleCompactionsDesc, float64(pm.Compact.Count))
	gauge(pebbleCompactDebtDesc, float64(pm.Compact.EstimatedDebt))
	counter(pebbleFlushesDesc, float64(pm.Flush.Count))
	gauge(pebbleMemtableDesc, float64(pm.MemTable.Size))
	gauge(pebbleCacheDesc, float64(pm.BlockCache.Size))
	counter(pebbleCacheHitsDesc, float64(pm.BlockCache.Hits))
	counter(pebbleCacheMissDesc, float64(pm.BlockCache.Misses))
}

func unixSeconds(nanos int64) float64 {
	if nanos <= 0 {
		return 0
	}
	return float64(nanos) / 1e9
}
