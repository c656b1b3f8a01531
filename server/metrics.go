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
}

func newMetrics(sched func() *cluster.Cluster) *metrics {
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
	}
	m.reg.MustRegister(m.submitted, m.dispatched, m.finished, m.latency, m.logBytes,
		m.slaMissed, m.refused, m.preempted,
		&stateCollector{sched: sched},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// storeCollectors are the store's health in /metrics:
// hodei_store_commit_failures_total counts the commits that failed as a
// whole (a full disk, an I/O error), and hodei_store_ready is 1 while the
// store commits and 0 while it cannot.
func storeCollectors(db *store.DB) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hodei_store_commit_failures_total", Help: "Store commits that failed as a whole (a full disk, an I/O error).",
		}, func() float64 { return float64(db.Stats().Failed) }),
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
)

// stateCollector counts jobs and workers at scrape time, so the gauges can
// never drift from the scheduler's state.
type stateCollector struct {
	sched func() *cluster.Cluster
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
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.sched()
	tenants := s.Tenants()
	for _, t := range tenants {
		for _, c := range [...]struct {
			state job.State
			n     int
		}{{job.Pending, t.PendingJobs}, {job.Scheduled, t.Scheduled}, {job.Running, t.RunningJobs}} {
			if c.n > 0 {
				ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(c.n), c.state.String(), t.Tenant.Name)
			}
		}
	}
	byState := map[job.WorkerState]int{job.WorkerReady: 0, job.WorkerDraining: 0, job.WorkerDown: 0, job.WorkerUnknown: 0}
	var total, used int64
	for _, w := range s.Workers() {
		byState[w.State]++
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
	}
}
