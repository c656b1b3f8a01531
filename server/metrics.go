package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store"
)

// metrics holds the Prometheus collectors. It is the scheduler's Observer.
type metrics struct {
	reg        *prometheus.Registry
	submitted  *prometheus.CounterVec
	dispatched *prometheus.CounterVec
	finished   *prometheus.CounterVec
	latency    prometheus.Histogram
	logBytes   prometheus.Counter
	slaMissed  *prometheus.CounterVec
	refused    *prometheus.CounterVec
	preempted  *prometheus.CounterVec
	lost       prometheus.Counter
}

// newMetrics returns the collectors over the cluster sched returns; now is
// the server's clock, for the ages of queues.
func newMetrics(sched func() *cluster.Cluster, now func() time.Time) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_jobs_submitted_total", Help: "Jobs accepted by Submit.",
		}, []string{"tenant"}),
		dispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_jobs_dispatched_total", Help: "Attempts assigned to a worker.",
		}, []string{"tenant"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_jobs_finished_total", Help: "Jobs that reached a terminal state.",
		}, []string{"tenant", "state"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hodei_dispatch_latency_seconds",
			Help:    "Time from a job becoming eligible (submit or backoff end) to its assignment.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		logBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hodei_log_bytes_received_total", Help: "Job output bytes received from agents.",
		}),
		slaMissed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_sla_missed_total", Help: "Jobs first dispatched after their deadline.",
		}, []string{"tenant"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_quota_refusals_total", Help: "Submits refused for the tenant's max-queued limit.",
		}, []string{"tenant"}),
		preempted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hodei_preemptions_total", Help: "Running jobs stopped to be requeued for a tenant below its share.",
		}, []string{"tenant"}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hodei_workers_lost_total", Help: "Workers declared DOWN: silent past their lease, or not back within a lease of a restart while holding jobs.",
		}),
	}
	m.reg.MustRegister(m.submitted, m.dispatched, m.finished, m.latency, m.logBytes,
		m.slaMissed, m.refused, m.preempted, m.lost,
		&stateCollector{sched: sched, now: now},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// storeCollectors are the store's health in /metrics:
// hodei_store_commit_failures_total counts the commits that failed as a
// whole (a full disk, an I/O error), hodei_store_commits_total those that
// succeeded, hodei_store_commit_duration_seconds times both, and
// hodei_store_ready is 1 while the store commits and 0 while it cannot.
func storeCollectors(db *store.DB) []prometheus.Collector {
	return []prometheus.Collector{
		commitCollector{db},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "hodei_store_ready", Help: "1 while the store commits, 0 while it cannot write its database.",
		}, func() float64 {
			if db.Health().Err != nil {
				return 0
			}
			return 1
		}),
	}
}

func (m *metrics) Submitted(tenant string, n int) {
	m.submitted.WithLabelValues(tenant).Add(float64(n))
	// The tenant's other counters start at 0 rather than appear at their
	// first event, so that rate() and increase() count that event too.
	m.dispatched.WithLabelValues(tenant)
	m.slaMissed.WithLabelValues(tenant)
	m.preempted.WithLabelValues(tenant)
}

func (m *metrics) Dispatched(tenant string, wait time.Duration) {
	m.dispatched.WithLabelValues(tenant).Inc()
	m.latency.Observe(wait.Seconds())
}

func (m *metrics) Finished(tenant string, state job.State, n int) {
	m.finished.WithLabelValues(tenant, state.String()).Add(float64(n))
}

func (m *metrics) SLAMissed(tenant string) { m.slaMissed.WithLabelValues(tenant).Inc() }

func (m *metrics) Refused(tenant string) { m.refused.WithLabelValues(tenant).Inc() }

func (m *metrics) Preempted(tenant string) { m.preempted.WithLabelValues(tenant).Inc() }

func (m *metrics) WorkersLost(n int) { m.lost.Add(float64(n)) }

var (
	commitsDesc = prometheus.NewDesc("hodei_store_commits_total",
		"Store transactions committed (each holds one or more writes).", nil, nil)
	commitFailuresDesc = prometheus.NewDesc("hodei_store_commit_failures_total",
		"Store commits that failed as a whole (a full disk, an I/O error).", nil, nil)
	commitDurationDesc = prometheus.NewDesc("hodei_store_commit_duration_seconds",
		"Time each store transaction took, writes and fsync included, failed ones too.", nil, nil)
)

// commitCollector reads the store's commit counters once a scrape, so
// that the counters and the histogram agree.
type commitCollector struct{ db *store.DB }

func (c commitCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- commitsDesc
	ch <- commitFailuresDesc
	ch <- commitDurationDesc
}

func (c commitCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.db.Stats()
	ch <- prometheus.MustNewConstMetric(commitsDesc, prometheus.CounterValue, float64(st.Commits))
	ch <- prometheus.MustNewConstMetric(commitFailuresDesc, prometheus.CounterValue, float64(st.Failed))
	buckets := make(map[float64]uint64, len(store.CommitBuckets))
	var n uint64
	for i, le := range store.CommitBuckets {
		n += st.CommitSeconds[i]
		buckets[le] = n
	}
	n += st.CommitSeconds[len(store.CommitBuckets)]
	ch <- prometheus.MustNewConstHistogram(commitDurationDesc, n, st.CommitTime.Seconds(), buckets)
}

var (
	jobsDesc = prometheus.NewDesc("hodei_jobs",
		"Unfinished jobs by state and tenant (array tasks not yet materialized count as PENDING); finished ones are counted by hodei_jobs_finished_total.", []string{"state", "tenant"}, nil)
	workersDesc = prometheus.NewDesc("hodei_workers",
		"Known workers by state.", []string{"state"}, nil)
	slotsDesc = prometheus.NewDesc("hodei_worker_slots",
		"Slots of connected, non-DOWN workers: total and allocated.", []string{"kind"}, nil)
	tenantPendingDesc = prometheus.NewDesc("hodei_tenant_pending_slots",
		"Slots asked for by the tenant's pending jobs.", []string{"tenant"}, nil)
	tenantRunningDesc = prometheus.NewDesc("hodei_tenant_running_slots",
		"Slots held by the tenant's scheduled and running jobs.", []string{"tenant"}, nil)
	tenantShareDesc = prometheus.NewDesc("hodei_tenant_share",
		"The tenant's fraction of the slots in use.", []string{"tenant"}, nil)
	tenantFairShareDesc = prometheus.NewDesc("hodei_tenant_fair_share",
		"The tenant's weight over the weights of the tenants with work; 0 without work.", []string{"tenant"}, nil)
	tenantWeightDesc = prometheus.NewDesc("hodei_tenant_weight",
		"The tenant's fair-share weight.", []string{"tenant"}, nil)
	tenantQueueAgeDesc = prometheus.NewDesc("hodei_tenant_queue_age_seconds",
		"How long the tenant's longest-waiting ready job (dependencies met, backoff over) has waited since it became eligible, to the second; 0 when none waits.", []string{"tenant"}, nil)
	backlogResultsDesc = prometheus.NewDesc("hodei_agent_backlog_results",
		"Job results in the agent's journal that the server has not acknowledged, as of its last heartbeat (connected workers).", []string{"worker", "name"}, nil)
	backlogBytesDesc = prometheus.NewDesc("hodei_agent_backlog_bytes",
		"Job output bytes the agent spooled that the server has not acknowledged, as of its last heartbeat (connected workers).", []string{"worker", "name"}, nil)
)

// stateCollector counts jobs and workers at scrape time, so the gauges can
// never drift from the scheduler's state. A scrape costs O(tenants +
// workers + active jobs), never O(queued jobs): the cluster keeps the
// figures up to date as jobs move.
type stateCollector struct {
	sched func() *cluster.Cluster
	now   func() time.Time
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- jobsDesc
	ch <- workersDesc
	ch <- slotsDesc
	ch <- tenantPendingDesc
	ch <- tenantRunningDesc
	ch <- tenantShareDesc
	ch <- tenantFairShareDesc
	ch <- tenantWeightDesc
	ch <- tenantQueueAgeDesc
	ch <- backlogResultsDesc
	ch <- backlogBytesDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sched()
	now := c.now()
	tenants := s.Tenants()
	for _, t := range tenants {
		for _, c := range [...]struct {
			state job.State
			n     int
		}{{job.Pending, t.PendingJobs}, {job.Scheduled, t.Scheduled}, {job.Running, t.RunningJobs}} {
			// Zeros too: an alert or a panel tells "none" from "no data".
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(c.n), c.state.String(), t.Tenant.Name)
		}
	}
	byState := map[job.WorkerState]int{job.WorkerReady: 0, job.WorkerDraining: 0, job.WorkerDown: 0, job.WorkerUnknown: 0}
	var total, used int64
	for _, w := range s.Workers() {
		byState[w.State]++
		if w.Connected {
			ch <- prometheus.MustNewConstMetric(backlogResultsDesc, prometheus.GaugeValue, float64(w.Stats.UndeliveredResults), w.Worker.ID, w.Worker.Name)
			ch <- prometheus.MustNewConstMetric(backlogBytesDesc, prometheus.GaugeValue, float64(w.Stats.UnackedLogBytes), w.Worker.ID, w.Worker.Name)
		}
		if w.State != job.WorkerDown && w.State != job.WorkerUnknown {
			total += w.Worker.Capacity.Slots
			used += w.Allocated.Slots
		}
	}
	for st, n := range byState {
		ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(n), st.String())
	}
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(total), "total")
	ch <- prometheus.MustNewConstMetric(slotsDesc, prometheus.GaugeValue, float64(used), "allocated")
	for _, t := range tenants {
		name := t.Tenant.Name
		ch <- prometheus.MustNewConstMetric(tenantPendingDesc, prometheus.GaugeValue, float64(t.Pending.Slots), name)
		ch <- prometheus.MustNewConstMetric(tenantRunningDesc, prometheus.GaugeValue, float64(t.Running.Slots), name)
		ch <- prometheus.MustNewConstMetric(tenantShareDesc, prometheus.GaugeValue, t.Share, name)
		ch <- prometheus.MustNewConstMetric(tenantFairShareDesc, prometheus.GaugeValue, t.FairShare, name)
		ch <- prometheus.MustNewConstMetric(tenantWeightDesc, prometheus.GaugeValue, t.Tenant.Weight, name)
		age := 0.0
		if !t.OldestReady.IsZero() {
			age = max(now.Sub(t.OldestReady).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(tenantQueueAgeDesc, prometheus.GaugeValue, age, name)
	}
}
