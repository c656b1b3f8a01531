package server

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/hodei-jobs/hodei/proto"
)

// metricValue returns the value of series (name and labels as /metrics
// prints them) in body.
func metricValue(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestDashboardMetrics checks the figures the Grafana dashboard and the
// alert rules in deploy/ read: the age of a tenant's queue, the agents'
// backlog from their heartbeats, the store's commit histogram, workers lost.
func TestDashboardMetrics(t *testing.T) {
	var skew atomic.Int64 // the server's clock runs this far ahead
	s := setup(t, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) } })
	s.setTenant(t, &pb.Tenant{Name: "team-a"})
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "team-a"})
	skew.Store(int64(time.Hour))
	want := func(m, series string, cond func(float64) bool) {
		t.Helper()
		v, ok := metricValue(m, series)
		if !ok || !cond(v) {
			t.Fatalf("/metrics: %s = %v (present %v); all of it:\n%s", series, v, ok, m)
		}
	}
	m := s.httpGet(t, "/metrics")
	// Waiting an hour, to the second.
	want(m, `hodei_tenant_queue_age_seconds{tenant="team-a"}`, func(v float64) bool { return v >= 3600 && v < 3660 })
	want(m, `hodei_tenant_queue_age_seconds{tenant="default"}`, func(v float64) bool { return v == 0 })
	want(m, `hodei_jobs{state="RUNNING",tenant="team-a"}`, func(v float64) bool { return v == 0 }) // zeros are there
	want(m, `hodei_workers_lost_total`, func(v float64) bool { return v == 0 })
	want(m, `hodei_sla_missed_total{tenant="team-a"}`, func(v float64) bool { return v == 0 }) // from the first submit
	commits, _ := metricValue(m, "hodei_store_commits_total")
	failures, _ := metricValue(m, "hodei_store_commit_failures_total")
	want(m, "hodei_store_commit_duration_seconds_count", func(v float64) bool { return v > 0 && v == commits+failures })
	want(m, `hodei_store_commit_duration_seconds_bucket{le="+Inf"}`, func(v float64) bool { return v == commits+failures })

	// An agent's backlog comes with its heartbeats.
	a := connectAgent(t, s, hello("w1", 1))
	if got := a.recv().GetAssign().GetJob().GetId(); got != id {
		t.Fatalf("assigned %q, want %s", got, id)
	}
	a.send(&pb.AgentMessage{Msg: &pb.AgentMessage_Heartbeat{Heartbeat: &pb.Heartbeat{
		Running: []*pb.JobRef{{JobId: id, Attempt: 1}}, UndeliveredResults: 3, UnackedLogBytes: 4096}}})
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		m = s.httpGet(t, "/metrics")
		if v, _ := metricValue(m, `hodei_agent_backlog_results{name="w1",worker="w1"}`); v == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the heartbeat's backlog never showed:\n%s", m)
		}
		<-tick.C
	}
	want(m, `hodei_agent_backlog_bytes{name="w1",worker="w1"}`, func(v float64) bool { return v == 4096 })
	want(m, `hodei_tenant_queue_age_seconds{tenant="team-a"}`, func(v float64) bool { return v == 0 })
	want(m, `hodei_jobs{state="SCHEDULED",tenant="team-a"}`, func(v float64) bool { return v == 1 })
}
