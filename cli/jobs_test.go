package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// testJobs are one job in each interesting situation.
func testJobs() []*hodeipb.Job {
	ago := func(d time.Duration) int64 { return testNow.Add(-d).UnixNano() }
	return []*hodeipb.Job{
		{
			Id:    "01JAAAAAAAAAAAAAAAAAAAAAA1",
			Spec:  &hodeipb.JobSpec{Name: "build", Tenant: "default", Command: []string{"make", "all"}, Priority: proto.Int32(500), Labels: map[string]string{"app": "web"}},
			State: hodeipb.JobState_JOB_STATE_COMPLETED, Attempt: 1, Worker: "w-1", ExitCode: 0,
			CreatedUnixNano: ago(3 * 24 * time.Hour), StartedUnixNano: ago(3*24*time.Hour - time.Second),
			FinishedUnixNano: ago(3*24*time.Hour - time.Minute),
		},
		{
			Id: "01JAAAAAAAAAAAAAAAAAAAAAA2",
			Spec: &hodeipb.JobSpec{
				Name: "train\tmodel", Tenant: "ml", Script: "python train.py", Priority: proto.Int32(900),
				DeadlineUnixNano: ago(30 * time.Minute), Preemptible: true,
			},
			State: hodeipb.JobState_JOB_STATE_RUNNING, Attempt: 2, Worker: "gpu-3", ExitCode: 137,
			Reason:          "retry after exit 137",
			CreatedUnixNano: ago(5 * time.Hour), StartedUnixNano: ago(time.Hour),
			DeadlineMissed: true, Preemptions: 1,
			// Set on a job that is not pending, it is not shown.
			EffectivePriority: 1234,
		},
		{
			Id:    "01JAAAAAAAAAAAAAAAAAAAAAA3",
			Spec:  &hodeipb.JobSpec{Tenant: "default", Command: []string{"sh", "-c", "exit 3"}},
			State: hodeipb.JobState_JOB_STATE_FAILED, Attempt: 1, Worker: "w-2", ExitCode: 3,
			Reason:          "exit code 3",
			CreatedUnixNano: ago(90 * time.Second), StartedUnixNano: ago(80 * time.Second), FinishedUnixNano: ago(70 * time.Second),
		},
		{
			Id:              "01JAAAAAAAAAAAAAAAAAAAAAA4",
			Spec:            &hodeipb.JobSpec{Name: "later", Tenant: "default", Command: []string{"true"}, DependsOn: []string{"01JAAAAAAAAAAAAAAAAAAAAAA3"}},
			State:           hodeipb.JobState_JOB_STATE_CANCELLED,
			Attempt:         1,
			Reason:          "dependency 01JAAAAAAAAAAAAAAAAAAAAAA3 failed",
			CreatedUnixNano: ago(61 * time.Second), FinishedUnixNano: ago(60 * time.Second),
		},
		{
			Id:                "01JAAAAAAAAAAAAAAAAAAAAAA5",
			Spec:              &hodeipb.JobSpec{Name: "queued", Tenant: "default", Command: []string{"echo", "hello world"}},
			State:             hodeipb.JobState_JOB_STATE_PENDING,
			Attempt:           1,
			CreatedUnixNano:   ago(2 * time.Second),
			EffectivePriority: 512.34,
		},
	}
}

func TestJobsLsTable(t *testing.T) {
	h := newHarness(t)
	h.jobs.jobs = testJobs()
	r := h.run(t, "jobs", "ls")
	r.wantOK(t)
	checkGolden(t, "jobs-ls", r.stdout)
}

// requiredJobKeys are the keys every job has in --output json.
var requiredJobKeys = []string{"id", "name", "tenant", "state", "attempt", "priority", "labels", "command", "created"}

func TestJobsLsJSON(t *testing.T) {
	h := newHarness(t)
	h.jobs.jobs = testJobs()
	r := h.run(t, "jobs", "ls", "-o", "json")
	r.wantOK(t)
	var got []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(got) != len(h.jobs.jobs) {
		t.Fatalf("got %d jobs, want %d", len(got), len(h.jobs.jobs))
	}
	for i, j := range got {
		for _, k := range requiredJobKeys {
			if _, ok := j[k]; !ok {
				t.Errorf("job %d has no key %q: %v", i, k, j)
			}
		}
	}
	// Newest first: the running job is the fourth.
	slices.Reverse(got)
	running := got[1]
	if running["state"] != "RUNNING" || running["attempt"] != 2.0 || running["worker"] != "gpu-3" || running["priority"] != 900.0 {
		t.Errorf("running job = %v", running)
	}
	if _, ok := running["effective_priority"]; ok {
		t.Errorf("running job has an effective priority: %v", running["effective_priority"])
	}
	if running["preemptible"] != true || running["deadline_missed"] != true || running["preemptions"] != 1.0 || running["deadline"] != "2026-03-14T14:39:26Z" {
		t.Errorf("running job's SLA fields = %v", running)
	}
	if got[4]["effective_priority"] != 512.34 {
		t.Errorf("pending job's effective_priority = %v, want 512.34", got[4]["effective_priority"])
	}
	// A pending job has nothing that means nothing yet: no exit code,
	// worker, reason or start.
	for _, k := range []string{"exit_code", "worker", "reason", "started", "finished", "scheduled"} {
		if v, ok := got[4][k]; ok {
			t.Errorf("pending job has %s: %v", k, v)
		}
	}
	if _, ok := running["exit_code"]; ok {
		t.Errorf("running job has an exit code: %v", running["exit_code"])
	}
	if got[0]["exit_code"] != 0.0 || got[0]["worker"] != "w-1" {
		t.Errorf("completed job: exit_code %v, worker %v; want 0 and w-1", got[0]["exit_code"], got[0]["worker"])
	}
	if _, ok := running["finished"]; ok {
		t.Errorf("running job has a finished time: %v", running["finished"])
	}
	if created, err := time.Parse(time.RFC3339, running["created"].(string)); err != nil || !created.Equal(testNow.Add(-5*time.Hour)) {
		t.Errorf("created = %v (%v), want RFC 3339 of %v", running["created"], err, testNow.Add(-5*time.Hour))
	}
	if got[2]["exit_code"] != 3.0 || got[2]["reason"] != "exit code 3" {
		t.Errorf("failed job = %v", got[2])
	}
	// Absent priority shows the server's default; no labels show {}.
	if got[2]["priority"] != 500.0 || fmt.Sprint(got[2]["labels"]) != "map[]" {
		t.Errorf("defaults: priority %v, labels %v", got[2]["priority"], got[2]["labels"])
	}
}

func TestJobsLsEmptyJSON(t *testing.T) {
	h := newHarness(t)
	r := h.run(t, "-o", "json", "jobs", "ls")
	r.wantOK(t)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("stdout = %q, want []", r.stdout)
	}
}

func TestJobsLsFiltersAndPages(t *testing.T) {
	many := make([]*hodeipb.Job, 2500)
	for i := range many {
		many[i] = &hodeipb.Job{Id: fmt.Sprintf("01J%023d", i), Spec: &hodeipb.JobSpec{}, State: hodeipb.JobState_JOB_STATE_PENDING}
	}
	for _, tc := range []struct {
		name      string
		args      []string
		wantJobs  int
		wantPages []int32 // page_size of each request
	}{
		{"DefaultLimit", nil, 50, []int32{50}},
		{"Limit", []string{"--limit", "5"}, 5, []int32{5}},
		{"LimitOverPageMax", []string{"--limit", "1500"}, 1500, []int32{1000, 1000}},
		{"All", []string{"--all"}, 2500, []int32{1000, 1000, 1000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.jobs = many
			r := h.run(t, append([]string{"jobs", "ls", "-o", "json"}, tc.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			var got []jobView
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantJobs {
				t.Errorf("got %d jobs, want %d", len(got), tc.wantJobs)
			}
			var pages []int32
			for _, req := range h.jobs.lists() {
				pages = append(pages, req.GetPageSize())
			}
			if !slices.Equal(pages, tc.wantPages) {
				t.Errorf("page sizes = %v, want %v", pages, tc.wantPages)
			}
		})
	}

	t.Run("Filters", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(t, "jobs", "ls", "--state", "running", "--tenant", "ml", "--label", "a=1", "--label", "b=2", "--name", "nightly build")
		r.wantOK(t)
		want := &hodeipb.ListJobsRequest{State: hodeipb.JobState_JOB_STATE_RUNNING, Tenant: "ml",
			Labels: map[string]string{"a": "1", "b": "2"}, Name: "nightly build", PageSize: defaultLimit,
			NewestFirst: true, Count: true}
		if reqs := h.jobs.lists(); len(reqs) != 1 || !proto.Equal(reqs[0], want) {
			t.Errorf("requests = %v, want [%v]", reqs, want)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want *hodeipb.ListJobsRequest
	}{
		{"DefaultView", nil, &hodeipb.ListJobsRequest{PageSize: defaultLimit, NewestFirst: true, Count: true,
			NotFinishedBeforeUnixNano: testNow.Add(-time.Hour).UnixNano()}},
		{"Since", []string{"--since", "2h", "--name", "nightly-*"}, &hodeipb.ListJobsRequest{PageSize: defaultLimit, NewestFirst: true, Count: true,
			CreatedSinceUnixNano: testNow.Add(-2 * time.Hour).UnixNano(), Name: "nightly-*"}},
		{"SinceTime", []string{"--since", "2026-03-01T00:00:00Z"}, &hodeipb.ListJobsRequest{PageSize: defaultLimit, NewestFirst: true, Count: true,
			CreatedSinceUnixNano: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()}},
		{"WindowAndTenant", []string{"--tenant", "ml", "--label", "a=1"}, &hodeipb.ListJobsRequest{PageSize: defaultLimit, NewestFirst: true, Count: true,
			Tenant: "ml", Labels: map[string]string{"a": "1"}, NotFinishedBeforeUnixNano: testNow.Add(-time.Hour).UnixNano()}},
		{"LabelList", []string{"--label", "a=1,b=2", "--label", "c=3"}, &hodeipb.ListJobsRequest{PageSize: defaultLimit, NewestFirst: true, Count: true,
			Labels: map[string]string{"a": "1", "b": "2", "c": "3"}, NotFinishedBeforeUnixNano: testNow.Add(-time.Hour).UnixNano()}},
		{"All", []string{"--all"}, &hodeipb.ListJobsRequest{PageSize: 1000, NewestFirst: true}},
		{"OldestFirst", []string{"--oldest-first", "--limit", "7"}, &hodeipb.ListJobsRequest{PageSize: 7, Count: true,
			NotFinishedBeforeUnixNano: testNow.Add(-time.Hour).UnixNano()}},
		{"Array", []string{"--array", "01J0000000000000000000ARAY"}, &hodeipb.ListJobsRequest{PageSize: defaultLimit, Count: true,
			Array: "01J0000000000000000000ARAY"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.run(t, append([]string{"jobs", "ls"}, tc.args...)...).wantOK(t)
			if reqs := h.jobs.lists(); len(reqs) != 1 || !proto.Equal(reqs[0], tc.want) {
				t.Errorf("requests = %v, want [%v]", reqs, tc.want)
			}
		})
	}

	for _, tc := range []struct{ name, arg, val, want string }{
		{"BadState", "--state", "done", `--state: "done" is not a state`},
		{"BadLabel", "--label", "x", `--label: "x" has no '='`},
		{"ZeroLimit", "--limit", "0", "--limit: 0 must be at least 1"},
		{"BadSince", "--since", "yesterday", `--since: "yesterday" is neither a duration`},
		{"NegativeSince", "--since", "-1h", "--since: -1h must be more than 0 before now"},
		// Far dates once wrapped around int64 nanoseconds (attack 11 #9).
		{"SinceFarDays", "--since", "100000d", "--since: 100000d before now is before 1970"},
		{"SinceHugeDays", "--since", "200000d", "--since: 200000d before now is before 1970"},
		{"SinceFarHours", "--since", "2562047h", "--since: 2562047h before now is before 1970"},
		{"SinceFuture", "--since", "2999-01-01T00:00:00Z", "--since: 2999-01-01T00:00:00Z is in the future"},
		{"SinceWraps", "--since", "2611-06-22T22:34:33Z", "--since: 2611-06-22T22:34:33Z is in the future"},
		{"SinceBefore1970", "--since", "1969-12-31T23:59:59Z", "--since: 1969-12-31T23:59:59Z is not after 1970"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(t, "jobs", "ls", tc.arg, tc.val)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}

func TestJobsGet(t *testing.T) {
	h := newHarness(t)
	h.jobs.jobs = testJobs()

	t.Run("JSON", func(t *testing.T) {
		r := h.run(t, "jobs", "get", "-o", "json", "01JAAAAAAAAAAAAAAAAAAAAAA1")
		r.wantOK(t)
		var got map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		for _, k := range append(requiredJobKeys, "started", "finished") {
			if _, ok := got[k]; !ok {
				t.Errorf("no key %q: %v", k, got)
			}
		}
		if got["state"] != "COMPLETED" || fmt.Sprint(got["command"]) != "[make all]" {
			t.Errorf("job = %v", got)
		}
	})
	t.Run("Table", func(t *testing.T) {
		r := h.run(t, "jobs", "get", "01JAAAAAAAAAAAAAAAAAAAAAA2")
		r.wantOK(t)
		checkGolden(t, "jobs-get", r.stdout)
	})
	t.Run("NotFound", func(t *testing.T) {
		r := h.run(t, "jobs", "get", "01JZZZZZZZZZZZZZZZZZZZZZZZ")
		if r.code != 1 || r.stderr != "hodei: 01JZZZZZZZZZZZZZZZZZZZZZZZ not found\n" {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("MissingID", func(t *testing.T) {
		r := h.run(t, "jobs", "get")
		if r.code != 2 || !strings.Contains(r.stderr, "missing job ID") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("FlagAfterID", func(t *testing.T) {
		r := h.run(t, "jobs", "get", "01JAAAAAAAAAAAAAAAAAAAAAA2", "-o", "json")
		r.wantOK(t)
		if !strings.HasPrefix(r.stdout, "{") {
			t.Errorf("jobs get ID -o json printed %q, want JSON", r.stdout)
		}
	})
	t.Run("UnknownFlagAfterID", func(t *testing.T) {
		r := h.run(t, "jobs", "get", "01JAAAAAAAAAAAAAAAAAAAAAA2", "--bogus")
		if r.code != 2 || !strings.Contains(r.stderr, "flag provided but not defined: --bogus") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("ExtraArgument", func(t *testing.T) {
		r := h.run(t, "jobs", "get", "01JAAAAAAAAAAAAAAAAAAAAAA2", "extra")
		if r.code != 2 || !strings.Contains(r.stderr, `unexpected argument "extra"`) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

// specJob is a job with every field of its spec set, secrets included.
func specJob() *hodeipb.Job {
	return &hodeipb.Job{
		Id: "01JAAAAAAAAAAAAAAAAAAAAAA7",
		Spec: &hodeipb.JobSpec{
			Name: "render[7]", Tenant: "vfx", Command: []string{"./render.sh", "--frame", "7"},
			Labels:    map[string]string{"team": "vfx"},
			Env:       map[string]string{"SCENE": "forest-plain-value", "HODEI_ARRAY_INDEX": "7"},
			SecretEnv: map[string]string{"API_TOKEN": "hunter2-secret-value"},
			Workdir:   "/srv/render", NoPty: true, TimeoutMs: 90 * 60 * 1000, Retries: 2, BackoffMs: 30000,
			Priority: proto.Int32(700), Resources: &hodeipb.Resources{CpuMillis: 2000, MemoryMib: 4096, Slots: 2},
			Selector: map[string]string{"gpu": "true", "zone": "b"}, DependsOn: []string{"01JAAAAAAAAAAAAAAAAAAAAAA1"},
			Array: "01JAAAAAAAAAAAAAAAAAAAAAA0", ArrayIndex: 7, ArrayLimit: 10,
		},
		State: hodeipb.JobState_JOB_STATE_PENDING, Attempt: 1, EffectivePriority: 700,
		CreatedUnixNano: testNow.Add(-time.Minute).UnixNano(),
	}
}

func TestJobsGetSpec(t *testing.T) {
	// jobs get shows the whole spec, the environment by name only: no
	// value of env or secret_env, whatever the server sent.
	h := newHarness(t)
	h.jobs.jobs = []*hodeipb.Job{specJob()}
	r := h.run(t, "jobs", "get", "01JAAAAAAAAAAAAAAAAAAAAAA7")
	r.wantOK(t)
	checkGolden(t, "jobs-get-spec", r.stdout)
	r2 := h.run(t, "jobs", "get", "-o", "json", "01jaaaaaaaaaaaaaaaaaaaaaa7")
	r2.wantOK(t)
	for _, out := range []string{r.stdout, r2.stdout} {
		for _, secret := range []string{"hunter2-secret-value", "forest-plain-value"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows the value %q:\n%s", secret, out)
			}
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(r2.stdout), &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"env": "[HODEI_ARRAY_INDEX SCENE]", "secret_env": "[API_TOKEN]", "selector": "map[gpu:true zone:b]",
		"resources": "map[cpu_millis:2000 memory_mib:4096 slots:2]", "timeout": "1h30m0s", "retries": "2",
		"backoff": "30s", "workdir": "/srv/render", "no_pty": "true", "array": "01JAAAAAAAAAAAAAAAAAAAAAA0",
		"array_index": "7", "array_limit": "10", "depends_on": "[01JAAAAAAAAAAAAAAAAAAAAAA1]",
	} {
		if s := fmt.Sprint(got[k]); s != want {
			t.Errorf("%s = %s, want %s", k, s, want)
		}
	}
	for _, k := range []string{"exit_code", "worker", "started", "finished"} {
		if _, ok := got[k]; ok {
			t.Errorf("a PENDING job's JSON has %s", k)
		}
	}
}

func TestJobsIDPrefix(t *testing.T) {
	// An id is taken in any case, and by any unique start of it; the
	// command then works with the whole id.
	h := newHarness(t)
	h.jobs.jobs = testJobs()
	r := h.run(t, "jobs", "get", "-o", "json", "01jaaaaaaaaaaaaaaaaaaaaaa3")
	r.wantOK(t)
	if !strings.Contains(r.stdout, `"id": "01JAAAAAAAAAAAAAAAAAAAAAA3"`) {
		t.Errorf("jobs get in lower case:\n%s", r.stdout)
	}
	h.jobs.jobs = append(h.jobs.jobs, specJob())
	r = h.run(t, "jobs", "cancel", "01jaaaaaaaaaaaaaaaaaaaaaa7"[:25])
	if r.code != 1 || !strings.Contains(r.stderr, "is the start of 6 job ids") {
		t.Errorf("ambiguous: exit %d, stderr %q", r.code, r.stderr)
	}
	r = h.run(t, "jobs", "cancel", "01JAAAAAAAAAAAAAAAAAAAAAA7"[:26])
	r.wantOK(t)
	if reqs := h.jobs.cancelReqs(); len(reqs) != 1 || reqs[0].GetId() != "01JAAAAAAAAAAAAAAAAAAAAAA7" {
		t.Errorf("cancel requests = %v", reqs)
	}
	h.jobs.mu.Lock()
	resolves := slices.Clone(h.jobs.resolves)
	h.jobs.mu.Unlock()
	if !slices.Equal(resolves, []string{"01jaaaaaaaaaaaaaaaaaaaaaa"}) {
		t.Errorf("Resolve asked %q; want only the prefix (a whole id needs no call)", resolves)
	}
	r = h.run(t, "logs", "01jz")
	if r.code != 1 || r.stderr != "hodei: no job id starts with \"01jz\"\n" {
		t.Errorf("not found: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestJobsCancel(t *testing.T) {
	h := newHarness(t)
	h.jobs.jobs = testJobs()
	r := h.run(t, "jobs", "cancel", "--reason", "wrong input", "01JAAAAAAAAAAAAAAAAAAAAAA5")
	r.wantOK(t)
	if r.stdout != "01JAAAAAAAAAAAAAAAAAAAAAA5 CANCELLED\n" {
		t.Errorf("stdout = %q, want the id and CANCELLED", r.stdout)
	}
	want := &hodeipb.CancelJobRequest{Id: "01JAAAAAAAAAAAAAAAAAAAAAA5", Reason: "wrong input"}
	if reqs := h.jobs.cancelReqs(); len(reqs) != 1 || !proto.Equal(reqs[0], want) {
		t.Errorf("cancel requests = %v, want [%v]", reqs, want)
	}

	r = h.run(t, "jobs", "cancel", "-o", "json", "01JAAAAAAAAAAAAAAAAAAAAAA5")
	r.wantOK(t)
	var got jobView
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.State != "CANCELLED" {
		t.Errorf("json = %s (%v), want a CANCELLED job", r.stdout, err)
	}
	// A job cancelled before is told as one that had ended, as a
	// COMPLETED one is (trial 11 #12).
	for id, want := range map[string]string{
		"01JAAAAAAAAAAAAAAAAAAAAAA4": "CANCELLED (it had ended; nothing to cancel)",
		"01JAAAAAAAAAAAAAAAAAAAAAA1": "COMPLETED (it had ended; nothing to cancel)",
	} {
		r = h.run(t, "jobs", "cancel", id)
		r.wantOK(t)
		if r.stdout != id+" "+want+"\n" {
			t.Errorf("cancel %s: stdout %q, want %q", id, r.stdout, want)
		}
	}
}

// watchedWriter is a stdout that closes seen once what was written
// contains want.
type watchedWriter struct {
	mu   sync.Mutex // guards buf
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watchedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestJobsLsStreams checks that `jobs ls --all` prints each page as it
// arrives: the fake server answers the second page only once the first
// page's last job is on stdout.
func TestJobsLsStreams(t *testing.T) {
	many := make([]*hodeipb.Job, 1500)
	for i := range many {
		many[i] = &hodeipb.Job{Id: fmt.Sprintf("01J%023d", i), Spec: &hodeipb.JobSpec{Name: fmt.Sprintf("job-%d", i)},
			State: hodeipb.JobState_JOB_STATE_PENDING}
	}
	lastOfFirst := many[500].GetId() // newest first, the first page ends 1,000 jobs from the end
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"Table", nil},
		{"JSON", []string{"-o", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.jobs = many
			out := &watchedWriter{want: lastOfFirst, seen: make(chan struct{})}
			h.jobs.listGate = func(ctx context.Context, req *hodeipb.ListJobsRequest) error {
				if req.GetPageToken() == "" {
					return nil
				}
				select {
				case <-out.seen:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Second): // a failure, not a wait: the CLI holds the first page back
					return status.Error(codes.FailedPrecondition, "the second page was asked for before the first was printed")
				}
			}
			var stderr bytes.Buffer
			e := &env{now: func() time.Time { return testNow }, poll: time.Millisecond}
			args := append([]string{"hodei", "--addr", h.addr, "jobs", "ls", "--all"}, tc.args...)
			if code := run(context.Background(), args, out, &stderr, e); code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			if pages := len(h.jobs.lists()); pages != 2 {
				t.Fatalf("%d pages requested, want 2", pages)
			}
			got := out.String()
			if tc.name == "JSON" {
				var views []jobView
				if err := json.Unmarshal([]byte(got), &views); err != nil || len(views) != len(many) {
					t.Fatalf("%d jobs (%v) in\n%.300s", len(views), err, got)
				}
				return
			}
			if lines := strings.Count(got, "\n"); lines != len(many)+1 {
				t.Fatalf("%d lines, want a header and %d rows", lines, len(many))
			}
		})
	}
}

func TestJobsLsFooter(t *testing.T) {
	// When more jobs match than it shows, jobs ls says how many on
	// stderr, after the listing, in both formats.
	many := make([]*hodeipb.Job, 2500)
	for i := range many {
		many[i] = &hodeipb.Job{Id: fmt.Sprintf("01J%023d", i), Spec: &hodeipb.JobSpec{}, State: hodeipb.JobState_JOB_STATE_PENDING}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		total   int64
		atLeast bool
		want    string
	}{
		{"Default", nil, 0, false, "50 of 2,500 shown (--all, --limit N, --state …)\n"},
		{"JSON", []string{"-o", "json", "--limit", "10"}, 0, false, "10 of 2,500 shown (--all, --limit N, --state …)\n"},
		{"Everything", []string{"--limit", "2500"}, 0, false, ""},
		{"All", []string{"--all"}, 0, false, ""},
		{"LowerBound", nil, 100_000, true, "50 of more than 100,000 shown (--all, --limit N, --state …)\n"},
		{"LowerBoundSmall", nil, 20, true, "50 shown; more match (--all, --limit N, --state …)\n"},
		{"Exact", nil, 1_234_567, false, "50 of 1,234,567 shown (--all, --limit N, --state …)\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.jobs.jobs, h.jobs.total, h.jobs.totalAtLeast = many, tc.total, tc.atLeast
			r := h.run(t, append([]string{"jobs", "ls"}, tc.args...)...)
			if r.code != 0 || r.stderr != tc.want {
				t.Errorf("exit %d, stderr %q; want 0 and %q", r.code, r.stderr, tc.want)
			}
			reqs := h.jobs.lists()
			for i, req := range reqs {
				if want := i == 0 && !slices.Contains(tc.args, "--all"); req.GetCount() != want {
					t.Errorf("request %d asks for the count: %v, want %v", i, req.GetCount(), want)
				}
			}
		})
	}
}

// TestExitCell: a job killed by a signal shows as a shell reports it.
func TestExitCell(t *testing.T) {
	failed, done := hodeipb.JobState_JOB_STATE_FAILED, hodeipb.JobState_JOB_STATE_COMPLETED
	for _, tc := range []struct {
		j    *hodeipb.Job
		want string
	}{
		{&hodeipb.Job{State: done}, "0"},
		{&hodeipb.Job{State: failed, ExitCode: 3}, "3"},
		{&hodeipb.Job{State: failed, ExitCode: -1, Signal: 9}, "137 (SIGKILL)"},
		{&hodeipb.Job{State: failed, ExitCode: -1, Signal: 15}, "143 (SIGTERM)"},
		{&hodeipb.Job{State: failed, ExitCode: -1, Signal: 200}, "328 (signal 200)"},
		{&hodeipb.Job{State: hodeipb.JobState_JOB_STATE_RUNNING}, ""},
	} {
		if got := exitCell(tc.j); got != tc.want {
			t.Errorf("exitCell(%v) = %q, want %q", tc.j, got, tc.want)
		}
	}
}

// TestJobsCancelling: a job whose cancel its agent is carrying out shows
// CANCELLING in `jobs ls` and `jobs get`, as `jobs cancel` printed; its
// JSON keeps its state and says cancel_requested.
func TestJobsCancelling(t *testing.T) {
	h := newHarness(t)
	jobs := testJobs()
	jobs[1].CancelRequested = "cancelled by user" // RUNNING
	jobs[1].Reason = ""                           // so the reason says what is under way
	h.jobs.jobs = jobs

	r := h.run(t, "jobs", "ls", "--all")
	r.wantOK(t)
	for line := range strings.SplitSeq(r.stdout, "\n") {
		if strings.HasPrefix(line, jobs[1].GetId()) && !strings.Contains(line, " CANCELLING ") {
			t.Errorf("jobs ls row %q does not say CANCELLING", line)
		}
	}
	r = h.run(t, "jobs", "get", jobs[1].GetId())
	r.wantOK(t)
	if !regexp.MustCompile(`(?m)^State:\s+CANCELLING$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^Reason:\s+being stopped: cancelled by user$`).MatchString(r.stdout) {
		t.Errorf("jobs get:\n%s\nwant State: CANCELLING and the cancel's reason", r.stdout)
	}
	r = h.run(t, "jobs", "get", "-o", "json", jobs[1].GetId())
	r.wantOK(t)
	var v jobView
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.State != "RUNNING" || v.CancelRequested != "cancelled by user" {
		t.Errorf("json %s (%v): want state RUNNING and cancel_requested", r.stdout, err)
	}
	// An ended job shows its end, whatever cancel was asked.
	jobs[3].CancelRequested = "cancelled by user" // CANCELLED
	r = h.run(t, "jobs", "get", jobs[3].GetId())
	if !regexp.MustCompile(`(?m)^State:\s+CANCELLED$`).MatchString(r.stdout) {
		t.Errorf("jobs get of an ended job:\n%s", r.stdout)
	}
	r = h.run(t, "jobs", "ls", "--state", "cancelling")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--state: CANCELLING is no state of its own") {
		t.Errorf("--state cancelling: exit %d, stderr %q", r.code, r.stderr)
	}
}
