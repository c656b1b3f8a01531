package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestWebPage drives the web page in headless Chromium against a real
// `hodei serve --dev` (server and agent, real jobs): log in with a token;
// a job submitted through the REST API appears on the jobs page without
// a reload; its page shows its output as it arrives, rendered as a
// terminal (colours, a \r progress line, an OSC title dropped); it is
// cancelled from the page after a confirm dialog and shows CANCELLED; a
// pipeline's page draws its graph and shows its steps turn COMPLETED; a
// viewer sees no cancel button and gets 403 when it calls the API anyway.
// It writes a screenshot of each page (and of the jobs page on a phone)
// under its temp dir, and also to $HODEI_SCREENS_DIR when set.
func TestWebPage(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the browser test starts Chromium and a server")
	}
	exe := findChromium(t)
	dir := t.TempDir()
	shots := filepath.Join(dir, "screens")
	if err := os.Mkdir(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	srv := startServer(t, data, "--dev", "--slots", "4")
	base := "http://" + srv.httpAddr
	admin := credsOf(t, data).token
	var workers struct {
		Workers []struct{ State string }
	}
	eventually(t, 30*time.Second, "the dev agent READY", func() bool {
		restCall(t, "GET", base+"/v1/workers", admin, nil, &workers)
		return len(workers.Workers) == 1 && workers.Workers[0].State == "WORKER_STATE_READY"
	})
	out, errOut, code := hodei(t, srv.grpcAddr, "token", "create", "--role", "viewer", "--name", "ui-viewer")
	if code != 0 {
		t.Fatalf("token create --role viewer: exit %d: %s", code, errOut)
	}
	viewer := strings.TrimSpace(out)
	// Something on the cron page.
	restCall(t, "POST", base+"/v1/cron", admin, map[string]any{"schedule": map[string]any{
		"name": "nightly-report", "schedule": "0 3 * * *", "job": map[string]any{"command": []string{"true"}},
	}}, &map[string]any{})

	alloc := browserAllocator(t, exe)
	page := newTab(t, alloc, base, shots)
	page.login(admin)
	page.wait("the overview", "document.querySelector('#ov-workers') && document.querySelector('#ov-workers').textContent.includes('ready')")
	var role string
	page.eval("document.querySelector('#role').textContent", &role)
	if role != "admin" {
		t.Fatalf("the page shows role %q, want admin", role)
	}

	// The page's terminal-safety filter does what the CLI's does, byte for
	// byte, on the vectors cli's TestTermFilterVectors keeps current.
	vectors, err := os.ReadFile("testdata/termsafe/vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	quoted, _ := json.Marshal(string(vectors))
	var mismatches []string
	page.eval(fmt.Sprintf(`import('/ui/js/termsafe.js').then(m => {
		const hex = s => Uint8Array.from((s || '').match(/../g) || [], x => parseInt(x, 16));
		const bad = [];
		for (const line of %s.trim().split('\n')) {
			const [i, c, o] = line.split(' ');
			const in_ = hex(i), f = new m.TermFilter();
			const got = [...f.write(in_.subarray(0, +c)), ...f.write(in_.subarray(+c))]
				.map(x => x.toString(16).padStart(2, '0')).join('');
			if (got !== (o || '')) bad.push(line + ' -> ' + got);
		}
		return bad;
	})`, quoted), &mismatches)
	if len(mismatches) > 0 {
		t.Fatalf("the page's TermFilter differs from cli's termFilter on %d vectors, e.g. %s", len(mismatches), mismatches[0])
	}

	// The jobs page, live: a job submitted through the REST API appears
	// without a reload (the marker set on window survives only if the
	// document was never reloaded).
	// 55 jobs no worker can take (they stay PENDING): more than a page.
	specs := make([]map[string]any, 55)
	for i := range specs {
		specs[i] = map[string]any{"name": fmt.Sprintf("ui-batch-%02d", i), "command": []string{"true"},
			"selector": map[string]string{"zone": "nowhere"}, "labels": map[string]string{"batch": "ui"}}
	}
	restCall(t, "POST", base+"/v1/jobs:batch", admin, map[string]any{"specs": specs}, &map[string]any{})
	// For the overview: a failure, and a job waiting past its deadline.
	restCall(t, "POST", base+"/v1/jobs", admin, map[string]any{"spec": map[string]any{"name": "ui-fails", "script": "echo oops; exit 3"}}, &map[string]any{})
	restCall(t, "POST", base+"/v1/jobs", admin, map[string]any{"spec": map[string]any{"name": "ui-late", "command": []string{"true"},
		"selector": map[string]string{"zone": "nowhere"}, "deadlineUnixNano": fmt.Sprint(time.Now().Add(time.Second).UnixNano())}}, &map[string]any{})
	page.goTo("#/jobs")
	page.wait("the jobs page's live stream", "document.querySelector('#jobs-live.on')")
	var marked bool
	page.eval("(window.__noReload = 'still here', true)", &marked)
	gates := jobDir(t) // where the job, run as an unprivileged user, may look
	gate := filepath.Join(gates, "gate")
	script := "printf '\\033]0;evil title\\007'; for i in 1 2 3; do printf '\\033[32mline %d\\033[0m\\n' $i; sleep 0.3; done; " +
		"while [ ! -e " + gate + " ]; do sleep 0.05; done; " +
		"printf 'line 4\\n'; printf 'progress 10%%\\rprogress 60%%\\rprogress 100%%\\n'; echo line 5; while true; do sleep 1; done"
	var sub struct{ ID string }
	restCall(t, "POST", base+"/v1/jobs", admin, map[string]any{"spec": map[string]any{"name": "ui-loop", "script": script}}, &sub)
	row := fmt.Sprintf("#jobs-body tr[data-id=%q]", sub.ID)
	page.wait("the new job's row on the jobs page", fmt.Sprintf("document.querySelector('%s')", row))
	page.wait("the job RUNNING on the jobs page", fmt.Sprintf("document.querySelector('%s').dataset.state === 'RUNNING'", row))
	// Its "Ran" counts on while it runs, not frozen at the row's drawing.
	var ran0 string
	page.eval(fmt.Sprintf("document.querySelector('%s td.ran[data-started]').textContent", row), &ran0)
	page.wait("the running job's Ran counting on", fmt.Sprintf("document.querySelector('%s td.ran[data-started]').textContent !== %q", row, ran0))
	var still string
	page.eval("window.__noReload || ''", &still)
	if still != "still here" {
		t.Fatal("the jobs page reloaded to show the new job")
	}
	page.shot("jobs")

	// Search and paging: a name prefix, 50 a page, newest first, Older and
	// Newer through the page token; the start of an id opens its job.
	page.do("search by name", chromedp.SetValue(chromedp.CSS("#f-q"), "ui-batch"), chromedp.Click(chromedp.CSS("#job-filters button[type=submit]")))
	page.wait("the first page of the batch", "document.querySelectorAll('#jobs-body tr').length === 50 && document.querySelector('#page-older') && document.querySelector('#jobs-body tr td.name').textContent === 'ui-batch-54'")
	page.do("older", chromedp.Click(chromedp.CSS("#page-older")))
	page.wait("the second page", "document.querySelectorAll('#jobs-body tr').length === 5 && document.querySelector('#jobs-body tr td.name').textContent === 'ui-batch-04' && !document.querySelector('#page-older')")
	page.do("newer", chromedp.Click(chromedp.CSS("#page-newer")))
	page.wait("the first page again", "document.querySelectorAll('#jobs-body tr').length === 50 && document.querySelector('#jobs-body tr td.name').textContent === 'ui-batch-54'")
	page.do("search by id prefix", chromedp.SetValue(chromedp.CSS("#f-q"), strings.ToLower(sub.ID[:16])), chromedp.Click(chromedp.CSS("#job-filters button[type=submit]")))
	page.wait("the job opened by its id's start", fmt.Sprintf("location.hash === '#/jobs/%s' && document.querySelector('#job-status')", sub.ID))
	page.goTo("#/jobs")
	page.wait("the jobs page again", fmt.Sprintf("document.querySelector('%s')", row))

	// The job's page: its output arrives live and is rendered as a
	// terminal would.
	page.do("open the job", chromedp.Click(chromedp.CSS(row+" td.name a")))
	page.wait("the job page", "document.querySelector('#job-status') && document.querySelector('#log')")
	page.wait("the first lines of output", "document.querySelector('#log').textContent.includes('line 3')")
	var text string
	page.eval("document.querySelector('#log').textContent", &text)
	if strings.Contains(text, "line 4") {
		t.Fatalf("output shows line 4 before the job could print it:\n%s", text)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	page.wait("later output arriving live", "document.querySelector('#log').textContent.includes('line 5')")
	var lines []string
	page.eval("[...document.querySelectorAll('#log .t-line')].map(e => e.textContent)", &lines)
	got := strings.Join(lines, "\n")
	for _, want := range []string{"line 1", "line 2", "line 3", "line 4", "progress 100%", "line 5"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "progress 10%") || strings.Contains(got, "progress 60%") || strings.Contains(got, "evil title") {
		t.Errorf("output shows a rewritten progress line or the OSC title:\n%s", got)
	}
	var green int
	page.eval("[...document.querySelectorAll('#log span.f2')].filter(e => /line [123]/.test(e.textContent)).length", &green)
	if green != 3 {
		t.Errorf("%d green spans for lines 1-3, want 3 (SGR 32)", green)
	}
	page.shot("job")

	// Cancel from the page, through its confirm dialog.
	page.do("cancel the job", chromedp.Click(chromedp.CSS("#cancel")))
	page.wait("CANCELLED on the job page", "document.querySelector('#job-status [data-state=CANCELLED]')")
	if d := page.dialogMessages(); len(d) != 1 || !strings.Contains(d[0], sub.ID) || !strings.HasPrefix(d[0], "Cancel job") {
		t.Fatalf("dialogs %q, want one confirm naming %s", d, sub.ID)
	}
	var j struct{ State string }
	restCall(t, "GET", base+"/v1/jobs/"+sub.ID, admin, nil, &j)
	if j.State != "JOB_STATE_CANCELLED" {
		t.Fatalf("job state %s after the page's cancel, want CANCELLED", j.State)
	}
	page.wait("the cancel button gone", "!document.querySelector('#cancel')")

	// A pipeline: its graph, and its steps turning COMPLETED live. Its
	// first step waits for a file, so the page sees it before it ends.
	pgate := filepath.Join(gates, "pgate")
	var pl struct {
		Pipeline struct{ ID string }
	}
	restCall(t, "POST", base+"/v1/pipelines", admin, map[string]any{"spec": map[string]any{
		"name": "ui-diamond",
		"steps": []map[string]any{
			{"name": "fetch", "spec": map[string]any{"script": "while [ ! -e " + pgate + " ]; do sleep 0.05; done; echo fetched"}},
			{"name": "build", "needs": []string{"fetch"}, "spec": map[string]any{"command": []string{"echo", "build"}}},
			{"name": "test", "needs": []string{"fetch"}, "spec": map[string]any{"command": []string{"echo", "test"}}},
			{"name": "publish", "needs": []string{"build", "test"}, "spec": map[string]any{"command": []string{"echo", "publish"}}},
		},
	}}, &pl)
	page.goTo("#/pipelines/" + pl.Pipeline.ID)
	page.wait("the pipeline's graph", "document.querySelectorAll('#dag .node').length === 4 && document.querySelectorAll('#dag path.edge').length === 4")
	var first string
	page.eval("document.querySelector('#dag .node[data-step=fetch]').dataset.state", &first)
	if first == "COMPLETED" {
		t.Fatal("step fetch COMPLETED before its gate opened")
	}
	// The graph and the steps table say the same of each step, from one
	// summary of its jobs (SCHEDULED jobs make a RUNNING step in both).
	agree := `[...document.querySelectorAll('#steps-body tr')].every(tr => {
		const n = document.querySelector('#dag .node[data-step="' + tr.dataset.step + '"]');
		const b = tr.querySelector('td.step-state [data-state]');
		return n && b && n.dataset.state === b.dataset.state; })`
	page.wait("step fetch started", "document.querySelector('#dag .node[data-step=fetch]').dataset.state === 'RUNNING'")
	var same bool
	page.eval(agree, &same)
	if !same {
		var rows []string
		page.eval(`[...document.querySelectorAll('#steps-body tr')].map(tr => tr.innerText + ' | graph ' + document.querySelector('#dag .node[data-step="' + tr.dataset.step + '"]').dataset.state)`, &rows)
		t.Fatalf("the graph and the steps table disagree:\n%s", strings.Join(rows, "\n"))
	}
	if err := os.WriteFile(pgate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	page.wait("every step COMPLETED, live", "[...document.querySelectorAll('#dag .node')].every(n => n.dataset.state === 'COMPLETED')")
	page.wait("the pipeline COMPLETED", "document.querySelector('.head h1 [data-state=COMPLETED]')")
	page.wait("the steps table COMPLETED as the graph", agree+" && document.querySelectorAll('#steps-body td.step-state [data-state=COMPLETED]').length === 4")
	page.shot("pipeline")

	// Workers, tenants and cron, each with its action through the page
	// and its confirm dialog; a job runs meanwhile, shown on the worker.
	var run struct{ ID string }
	restCall(t, "POST", base+"/v1/jobs", admin, map[string]any{"spec": map[string]any{
		"name": "ui-sleeper", "command": []string{"sleep", "600"}, "labels": map[string]string{"team": "ui"}}}, &run)
	page.goTo("#/workers")
	page.wait("the running job on its worker", fmt.Sprintf("document.querySelector('#workers-body tr[data-state=READY] a[href=\"#/jobs/%s\"]')", run.ID))
	page.shot("workers")
	page.do("drain the worker", chromedp.Click(chromedp.CSS("#workers-body .drain")))
	page.wait("the worker DRAINING", "document.querySelector('#workers-body tr[data-state=DRAINING] .undrain')")
	page.do("undrain the worker", chromedp.Click(chromedp.CSS("#workers-body .undrain")))
	page.wait("the worker READY again", "document.querySelector('#workers-body tr[data-state=READY] .drain')")

	page.goTo("#/tenants")
	page.wait("the tenants page with its usage", "document.querySelector('#tenants-body tr[data-name=default] .spark') && document.querySelector('#usage-table tr[data-group=default]')")
	// The usage follows jobs as they end, without a reload.
	attempts := "Number(document.querySelector('#usage-table tr[data-group=default] td.attempts').textContent)"
	var before int
	page.eval(attempts, &before)
	restCall(t, "POST", base+"/v1/jobs", admin, map[string]any{"spec": map[string]any{"name": "ui-usage", "command": []string{"true"}}}, &map[string]any{})
	page.wait("the usage counting the job that ended", fmt.Sprintf("%s > %d", attempts, before))
	// The share over time spans the line's width once sampled twice,
	// with its time and scale written under it.
	page.wait("the share line across its box", `(() => { const s = document.querySelector('#tenants-body tr[data-name=default] svg.spark');
		const p = s && s.querySelector('path.spark-share'); return p && p.getBBox().width >= 0.9 * s.viewBox.baseVal.width; })()`)
	var caption string
	page.eval("document.querySelector('#tenants-body tr[data-name=default] .spark-cap').textContent", &caption)
	if !strings.HasPrefix(caption, "last ") || !strings.Contains(caption, "0–") {
		t.Errorf("the share line's caption is %q, want its time span and scale", caption)
	}
	page.shot("tenants")
	page.do("set the default tenant's weight",
		chromedp.Click(chromedp.CSS("#tenants-body tr[data-name=default] details.edit summary")),
		chromedp.SetValue(chromedp.CSS("#tenants-body tr[data-name=default] input[name=weight]"), "3"),
		chromedp.Click(chromedp.CSS("#tenants-body tr[data-name=default] form.edit button")))
	page.wait("the new weight", "document.querySelector('#tenants-body tr[data-name=default] td.num').textContent === '3'")
	if d := page.dialogMessages(); len(d) == 0 || d[len(d)-1] != "Set tenant default: weight 3, max queued no limit, max running slots no limit?" {
		t.Errorf("the tenant edit asked %q, want no limit for the limits left at 0", d[len(d)-1:])
	}
	var tenant struct {
		Tenant struct{ Weight float64 }
	}
	restCall(t, "GET", base+"/v1/tenants/default", admin, nil, &tenant)
	if tenant.Tenant.Weight != 3 {
		t.Fatalf("tenant default has weight %v after the page set 3", tenant.Tenant.Weight)
	}

	page.goTo("#/cron")
	page.wait("the cron page", "document.querySelector('#cron-body tr[data-name=nightly-report] .pause')")
	page.do("run the schedule now", chromedp.Click(chromedp.CSS("#cron-body tr[data-name=nightly-report] .run")))
	page.wait("the schedule's last job", "document.querySelector('#cron-body tr[data-name=nightly-report] a[href^=\"#/jobs/\"]')")
	page.shot("cron")
	page.goTo("#/")
	page.wait("the overview's failure and SLA miss", "document.querySelector('#ov-failures li') && document.querySelector('#ov-sla li')")
	page.shot("overview")
	page.noneSticksOut("the overview's cards", ".card")

	// A phone-sized screen: the jobs page fits its width.
	page.do("emulate a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulateTouch))
	page.goTo("#/jobs")
	page.wait("the jobs page on a phone", fmt.Sprintf("document.querySelector('%s')", row))
	var overflow int
	page.eval("document.documentElement.scrollWidth - window.innerWidth", &overflow)
	if overflow > 0 {
		t.Errorf("the jobs page is %d px wider than a 390 px phone screen", overflow)
	}
	page.shot("jobs-phone")
	// Workers and tenants stack each row into a card: nothing runs off
	// the screen or scrolls sideways, and Drain is on screen.
	page.goTo("#/workers")
	page.wait("the workers page on a phone", "document.querySelector('#workers-body tr[data-state=READY] .drain')")
	page.noneSticksOut("the workers page", "#workers-body")
	var drain struct{ Left, Right, Width float64 }
	page.eval("(r => ({left: r.left, right: r.right, width: r.width}))(document.querySelector('#workers-body .drain').getBoundingClientRect())", &drain)
	if drain.Width == 0 || drain.Left < 0 || drain.Right > 390 {
		t.Errorf("the Drain button is at x %.0f-%.0f on a 390 px screen", drain.Left, drain.Right)
	}
	page.shot("workers-phone")
	page.goTo("#/tenants")
	page.wait("the tenants page on a phone", "document.querySelector('#tenants-body tr[data-name=default] .spark') && document.querySelector('#usage-table')")
	page.noneSticksOut("the tenants page", "#tenants-body")
	page.shot("tenants-phone")
	page.goTo("#/")
	page.wait("the overview on a phone", "document.querySelector('#ov-sla li')")
	page.noneSticksOut("the overview on a phone", ".card")
	page.shot("overview-phone")

	// A viewer: no cancel button; the API refuses it anyway (403).
	vpage := newTab(t, page.ctx, base, shots) // a tab of its own: its own sessionStorage, so its own login
	vpage.login(viewer)
	vpage.eval("document.querySelector('#role').textContent", &role)
	if role != "viewer" {
		t.Fatalf("the viewer's page shows role %q", role)
	}
	// What a viewer may not read (workers) is not offered: no nav link,
	// no Workers card; the page itself says so plainly.
	vpage.wait("the viewer's overview", "document.querySelector('#ov-queue') && document.querySelector('#ov-sla')")
	var hidden struct {
		Card, Link bool
		Text       string
	}
	vpage.eval(`({card: !!document.querySelector('#ov-workers'), link: document.querySelector('#nav a[data-route=workers]').checkVisibility(),
		text: document.querySelector('#view').innerText})`, &hidden)
	if hidden.Card || hidden.Link || strings.Contains(hidden.Text, "Refused") {
		t.Errorf("the viewer's overview: workers card %v, Workers link shown %v, text:\n%s", hidden.Card, hidden.Link, hidden.Text)
	}
	vpage.shot("viewer-overview")
	vpage.goTo("#/workers")
	vpage.wait("the viewer's workers page", "document.querySelector('#workers-none')")
	vpage.eval("document.querySelector('#view').innerText", &hidden.Text)
	if !strings.Contains(hidden.Text, "cannot see workers") || strings.Contains(hidden.Text, "Refused") {
		t.Errorf("the viewer's workers page says:\n%s", hidden.Text)
	}
	vpage.goTo("#/jobs/" + run.ID)
	vpage.wait("the job page for the viewer", "document.querySelector('#job-status [data-state=RUNNING]')")
	var buttons int
	vpage.eval("document.querySelectorAll('#cancel, button.danger').length", &buttons)
	if buttons != 0 {
		t.Fatalf("the viewer sees %d cancel buttons", buttons)
	}
	var refused struct {
		Status int
		Text   string
	}
	vpage.eval(fmt.Sprintf(`import('/ui/js/api.js').then(api => api.post('/v1/jobs/%s:cancel', {}).then(
		() => ({status: 200, text: ''}), e => ({status: e.httpStatus, text: e.explain()})))`, run.ID), &refused)
	if refused.Status != 403 || !strings.Contains(refused.Text, "Refused (403)") {
		t.Fatalf("the viewer's cancel through the page's API: %d %q, want 403", refused.Status, refused.Text)
	}
	if code := restCall(t, "POST", base+"/v1/jobs/"+run.ID+":cancel", viewer, map[string]any{}, nil); code != 403 {
		t.Fatalf("the viewer's cancel over REST: HTTP %d, want 403", code)
	}
	restCall(t, "GET", base+"/v1/jobs/"+run.ID, admin, nil, &j)
	if j.State != "JOB_STATE_RUNNING" {
		t.Fatalf("the job is %s after the viewer's refused cancel", j.State)
	}
	restCall(t, "POST", base+"/v1/jobs/"+run.ID+":cancel", admin, map[string]any{}, &map[string]any{})

	// The pipelines list pages too: 50 more pipelines (their step waits
	// for a worker none is) put ui-diamond on the second page. Last, as
	// their jobs fill the first page of jobs.
	page.do("a wide screen again", chromedp.EmulateViewport(1280, 900))
	for i := range 50 {
		restCall(t, "POST", base+"/v1/pipelines", admin, map[string]any{"spec": map[string]any{
			"name":  fmt.Sprintf("ui-pl-%02d", i),
			"steps": []map[string]any{{"name": "s", "spec": map[string]any{"command": []string{"true"}, "selector": map[string]string{"zone": "nowhere"}}}},
		}}, &map[string]any{})
	}
	page.goTo("#/pipelines")
	page.wait("the newest page of pipelines", "document.querySelectorAll('#pipelines-body tr').length === 50 && document.querySelector('#pipelines-older') && document.querySelector('#pipelines-body tr td:nth-child(2)').textContent === 'ui-pl-49'")
	page.shot("pipelines")
	page.do("older pipelines", chromedp.Click(chromedp.CSS("#pipelines-older")))
	page.wait("the older page", fmt.Sprintf("document.querySelectorAll('#pipelines-body tr').length === 1 && document.querySelector('#pipelines-body tr').dataset.id === %q && !document.querySelector('#pipelines-older')", pl.Pipeline.ID))
	page.do("newer pipelines", chromedp.Click(chromedp.CSS("#pipelines-newer")))
	page.wait("the newest page again", "document.querySelectorAll('#pipelines-body tr').length === 50 && document.querySelector('#pipelines-body tr td:nth-child(2)').textContent === 'ui-pl-49'")
	copyScreens(t, shots, os.Getenv("HODEI_SCREENS_DIR"))
}
