package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	pb "github.com/hodei-jobs/hodei/proto"
)

// The monitoring files in deploy/ (see README, "Monitoring").
const (
	dashboardFile = "deploy/grafana/hodei.json"
	rulesFile     = "deploy/prometheus/hodei-rules.yml"
	rulesTestFile = "deploy/prometheus/hodei-rules.test.yml"
)

// promtoolPath returns promtool's path. Without it the test is skipped,
// saying how to get it, except under CI, where .ci/run installs it.
func promtoolPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("promtool is not installed, and CI is set: .ci/run installs it (Debian's prometheus package): %v", err)
	}
	t.Skipf("promtool is not installed (apt-get install prometheus): %s is not checked", rulesFile)
	return ""
}

// TestPrometheusRules checks the rules with promtool and runs their unit
// tests, in which each alert fires on synthetic series.
func TestPrometheusRules(t *testing.T) {
	promtool := promtoolPath(t)
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", rulesTestFile},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// grafanaPanel is what the test reads of a dashboard panel.
type grafanaPanel struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// dashboard is what the test reads of deploy/grafana/hodei.json.
type dashboard struct {
	Title         string         `json:"title"`
	UID           string         `json:"uid"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// labelValues is a Grafana variable's query: label_values(SELECTOR, LABEL).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

// dashboardQueries reads the dashboard, checks its shape (a datasource
// variable every panel uses, a tenant variable) and returns every PromQL
// query it makes, by where it is, with Grafana's variables in it.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("%s: uid %q, title %q, schemaVersion %d: want a uid, a title and a current schema (36+)", dashboardFile, d.UID, d.Title, d.SchemaVersion)
	}
	queries := map[string]string{}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" {
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, v.Definition)
				continue
			}
			queries["variable "+v.Name] = m[1]
		}
	}
	if vars["DS_PROMETHEUS"] != "datasource" || vars["tenant"] != "query" {
		t.Errorf("%s: variables %v, want a datasource variable DS_PROMETHEUS and a query variable tenant", dashboardFile, vars)
	}
	var walk func(ps []grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
				t.Errorf("panel %q: datasource %+v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for i, tg := range p.Targets {
				queries["panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
			}
		}
	}
	walk(d.Panels)
	return queries
}

// ruleQueries returns the expression of every rule in the rules file, by
// rule, and the names the recording rules define.
func ruleQueries(t *testing.T) (queries map[string]string, recorded map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Alert  string `yaml:"alert"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	queries, recorded = map[string]string{}, map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
				queries["record "+r.Record] = r.Expr
			} else {
				queries["alert "+r.Alert] = r.Expr
			}
		}
	}
	return queries, recorded
}

// Grafana's variables, as a query is sent: intervals become a duration,
// the others (used in regexp matchers) match anything.
var (
	grafanaInterval = regexp.MustCompile(`\$(\{__\w+\}|__\w+)`)
	grafanaVariable = regexp.MustCompile(`\$(\{\w+(:\w+)?\}|\w+)`)
)

// selectors parses a query and returns its vector selectors.
func selectors(t *testing.T, where, query string) []*parser.VectorSelector {
	t.Helper()
	q := grafanaInterval.ReplaceAllString(query, "5m")
	q = grafanaVariable.ReplaceAllString(q, ".*")
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, query, err)
		return nil
	}
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	if len(out) == 0 {
		t.Errorf("%s: %q reads no metric", where, query)
	}
	return out
}

// TestMonitoringQueriesParse parses every query of the dashboard and the
// rules and checks that they read the figures issue 13 asks them to show.
func TestMonitoringQueriesParse(t *testing.T) {
	dash := dashboardQueries(t)
	rules, _ := ruleQueries(t)
	read := func(queries map[string]string) map[string]bool {
		names := map[string]bool{}
		for where, q := range queries {
			for _, vs := range selectors(t, where, q) {
				names[vs.Name] = true
			}
		}
		return names
	}
	for _, c := range []struct {
		file  string
		names map[string]bool
		want  []string
	}{
		{dashboardFile, read(dash), []string{
			"hodei_jobs", "hodei_tenant_queue_age_seconds", // queue depth and age per tenant
			"hodei_jobs_dispatched_total", "hodei_dispatch_latency_seconds_bucket", // dispatch rate and latency
			"hodei_tenant_share", "hodei_tenant_fair_share", // share against fair share
			"hodei_workers", "hodei_sla_missed_total", // workers by state, SLA misses
			"hodei_store_commit_duration_seconds_bucket", "hodei_store_commit_failures_total", // commits
			"hodei_agent_backlog_results", "hodei_agent_backlog_bytes", // agent journal backlog
		}},
		{rulesFile, read(rules), []string{
			"hodei_tenant_queue_age_seconds", "hodei_sla_missed_total", "hodei_workers",
			"hodei_store_ready", "hodei_store_commit_failures_total",
			"hodei_agent_backlog_results", "hodei_agent_backlog_bytes",
		}},
	} {
		for _, n := range c.want {
			if !c.names[n] {
				t.Errorf("%s does not read %s", c.file, n)
			}
		}
	}
}

// scrapeSeries is the label sets of every series in a /metrics answer.
func scrapeSeries(t *testing.T, body string) []labels.Labels {
	t.Helper()
	p := parser.NewParser(parser.Options{})
	var out []labels.Labels
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ') // the value; no timestamps
		ls, err := p.ParseMetric(line[:i])
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out = append(out, ls)
	}
	return out
}

// scrapeLabels are the labels Prometheus adds to every series it scrapes,
// and synthetic are the series it makes itself: neither is in /metrics.
var (
	scrapeLabels = []string{"instance", "job"}
	synthetic    = map[string]bool{"up": true}
)

// TestMonitoringMetricsExist runs a job on a real server and agent, then
// checks that every series the dashboard and the alert rules select, label
// matchers included, is in the server's /metrics.
func TestMonitoringMetricsExist(t *testing.T) {
	srv := startServer(t, t.TempDir(), "--heartbeat", "200ms")
	agent := startAgent(t, srv.grpcAddr, t.TempDir())
	c := dial(t, srv.grpcAddr)
	resp, err := c.Jobs().Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"echo", "dashboard"}}})
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c.Jobs(), resp.GetId(), 30*time.Second); j.GetState() != pb.JobState_JOB_STATE_COMPLETED {
		t.Fatalf("job %s ended %s (%s):\n%s", j.GetId(), j.GetState(), j.GetReason(), agent.stderr)
	}
	code, body := getHTTP(t, srv, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	series := scrapeSeries(t, body)

	dash := dashboardQueries(t)
	rules, recorded := ruleQueries(t)
	queries := dash
	for k, v := range rules {
		queries[k] = v
	}
	wheres := make([]string, 0, len(queries))
	for w := range queries {
		wheres = append(wheres, w)
	}
	sort.Strings(wheres)
	checked := 0
	for _, where := range wheres {
		for _, vs := range selectors(t, where, queries[where]) {
			if synthetic[vs.Name] || recorded[vs.Name] {
				continue // not scraped; recorded ones are checked through their rule
			}
			checked++
			if !slices.ContainsFunc(series, func(ls labels.Labels) bool { return selects(vs, ls) }) {
				t.Errorf("%s: %s selects nothing in /metrics of a server that ran a job", where, vs)
			}
		}
	}
	t.Logf("%d selectors of %d queries found in /metrics (%d series)", checked, len(queries), len(series))
}

// selects reports whether vs selects the series ls, leaving out the
// labels Prometheus adds when it scrapes.
func selects(vs *parser.VectorSelector, ls labels.Labels) bool {
	for _, m := range vs.LabelMatchers {
		if slices.Contains(scrapeLabels, m.Name) {
			continue
		}
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}
