package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// restFixture is what TestRESTMatchesGRPC reads and changes: a server
// with a real agent, a finished job, a pipeline, a cron schedule, a
// tenant.
type restFixture struct {
	worker, job, pipeline string
}

func (s *sut) restFixture(t *testing.T) restFixture {
	t.Helper()
	startAgent(t, s, t.TempDir(), slog.New(slog.DiscardHandler))
	var fx restFixture
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for fx.worker == "" {
		ws, err := s.admin.ListWorkers(context.Background(), &pb.ListWorkersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(ws.GetWorkers()) == 1 && ws.GetWorkers()[0].GetState() == pb.WorkerState_WORKER_STATE_READY {
			fx.worker = ws.GetWorkers()[0].GetId()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent did not register")
		}
		<-tick.C
	}
	fx.job = s.submit(t, &pb.JobSpec{Name: "hello", Command: []string{"echo", "hello"}, Labels: map[string]string{"k": "v"}})
	s.waitDone(t, fx.job)
	p, err := s.jobs.RunPipeline(context.Background(), &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "p",
		Steps: []*pb.PipelineStepSpec{{Name: "a", Spec: &pb.JobSpec{Command: []string{"true"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	fx.pipeline = p.GetPipeline().GetId()
	if _, err := s.jobs.CronAdd(context.Background(), &pb.CronAddRequest{Schedule: &pb.CronSchedule{
		Name: "nightly", Schedule: "0 3 * * *", Job: &pb.JobSpec{Command: []string{"true"}}}}); err != nil {
		t.Fatal(err)
	}
	s.setTenant(t, &pb.Tenant{Name: "lab", Weight: 2})
	return fx
}

// route is one REST route as the proto annotates it and /openapi.json
// lists it: "GET /v1/jobs/{id}".
type route string

// TestRESTMatchesGRPC calls every route of the REST API on a server with a
// real agent: each read returns the same JSON as protojson of its gRPC
// call, and each change has its effect, seen through gRPC. It also checks
// that it called every route the proto annotates (except the two SSE
// streams, which TestSSE* cover).
func TestRESTMatchesGRPC(t *testing.T) {
	s := setup(t)
	fx := s.restFixture(t)
	tok := s.adminToken(t)
	ctx := context.Background()
	called := map[route]bool{}
	// A second pipeline, newer, so that a page of one has a next page.
	p2, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "p2",
		Steps: []*pb.PipelineStepSpec{{Name: "a", Spec: &pb.JobSpec{Command: []string{"true"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	newest := p2.GetPipeline().GetId()

	reads := []struct {
		route route
		path  string
		grpc  func() (proto.Message, error)
	}{
		{"GET /v1/jobs/{id}", "/v1/jobs/" + fx.job, func() (proto.Message, error) {
			return s.jobs.Get(ctx, &pb.GetJobRequest{Id: fx.job})
		}},
		{"GET /v1/jobs", "/v1/jobs?tenant=default&labels[k]=v&pageSize=50&count=true", func() (proto.Message, error) {
			return s.jobs.List(ctx, &pb.ListJobsRequest{Tenant: "default", Labels: map[string]string{"k": "v"}, PageSize: 50, Count: true})
		}},
		{"GET /v1/jobs", "/v1/jobs?state=JOB_STATE_COMPLETED&newest_first=true", func() (proto.Message, error) {
			return s.jobs.List(ctx, &pb.ListJobsRequest{State: pb.JobState_JOB_STATE_COMPLETED, NewestFirst: true})
		}},
		{"GET /v1/pipelines/{id}", "/v1/pipelines/" + fx.pipeline, func() (proto.Message, error) {
			return s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: fx.pipeline})
		}},
		{"GET /v1/pipelines", "/v1/pipelines", func() (proto.Message, error) {
			return s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{})
		}},
		{"GET /v1/pipelines", "/v1/pipelines?pageSize=1", func() (proto.Message, error) {
			return s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{PageSize: 1})
		}},
		{"GET /v1/pipelines", "/v1/pipelines?pageSize=1&pageToken=" + newest + "&tenant=default", func() (proto.Message, error) {
			return s.jobs.ListPipelines(ctx, &pb.ListPipelinesRequest{PageSize: 1, PageToken: newest, Tenant: "default"})
		}},
		{"GET /v1/resolve", "/v1/resolve?kind=ID_KIND_JOB&prefix=" + strings.ToLower(fx.job[:12]), func() (proto.Message, error) {
			return s.jobs.Resolve(ctx, &pb.ResolveRequest{Kind: pb.IdKind_ID_KIND_JOB, Prefix: fx.job[:12]})
		}},
		{"GET /v1/cron", "/v1/cron", func() (proto.Message, error) { return s.jobs.CronList(ctx, &pb.CronListRequest{}) }},
		{"GET /v1/cron/{name}", "/v1/cron/nightly", func() (proto.Message, error) {
			return s.jobs.CronGet(ctx, &pb.CronRef{Name: "nightly"})
		}},
		{"GET /v1/workers", "/v1/workers", func() (proto.Message, error) {
			return s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{})
		}},
		{"GET /v1/workers", "/v1/workers?pageSize=1&pageToken=" + fx.worker[:1], func() (proto.Message, error) {
			return s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{PageSize: 1, PageToken: fx.worker[:1]})
		}},
		{"GET /v1/workers", "/v1/workers?countsOnly=true", func() (proto.Message, error) {
			return s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{CountsOnly: true})
		}},
		{"GET /v1/tenants/{name}", "/v1/tenants/lab", func() (proto.Message, error) {
			return s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "lab"})
		}},
		{"GET /v1/tenants", "/v1/tenants", func() (proto.Message, error) { return s.admin.ListTenants(ctx, &pb.ListTenantsRequest{}) }},
		{"GET /v1/tokens", "/v1/tokens", func() (proto.Message, error) { return s.admin.ListTokens(ctx, &pb.ListTokensRequest{}) }},
		{"GET /v1/whoami", "/v1/whoami", func() (proto.Message, error) { return s.admin.WhoAmI(ctx, &pb.WhoAmIRequest{}) }},
		{"GET /v1/audit", "/v1/audit?limit=5&action=Submit", func() (proto.Message, error) {
			return s.admin.ListAudit(ctx, &pb.ListAuditRequest{Limit: 5, Action: "Submit"})
		}},
		{"GET /v1/usage", "/v1/usage?groupBy=day", func() (proto.Message, error) {
			return s.admin.GetUsage(ctx, &pb.GetUsageRequest{GroupBy: "day"})
		}},
	}
	for _, c := range reads {
		t.Run(string(c.route)+"?"+c.path, func(t *testing.T) {
			called[c.route] = true
			// A worker's heartbeat (or a token's last use) may change
			// between the two calls: the answers must agree on one of a
			// few tries, each a REST call and then the gRPC one.
			var diff string
			for range 20 {
				r := s.rest(t, tok, "GET", c.path, nil)
				r.ok(t, c.path, nil)
				m, err := c.grpc()
				if err != nil {
					t.Fatal(err)
				}
				var same bool
				if same, diff = sameJSON(t, r.body, m); same {
					return
				}
			}
			t.Errorf("REST and gRPC answers differ:\n%s", diff)
		})
	}

	t.Run("GET /v1/snapshot", func(t *testing.T) {
		called["GET /v1/snapshot"] = true
		r := s.rest(t, tok, "GET", "/v1/snapshot", nil)
		r.ok(t, "snapshot", nil)
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		// The same database as gRPC's snapshot: a bbolt file (its first
		// meta page's magic, after the 16-byte page header), and the jobs
		// in it. Not the same bytes: a commit between the two (the calls'
		// audit records) moves the meta pages' transaction ids.
		magic := binary.LittleEndian.AppendUint32(nil, 0xED0CDAED)
		if g := s.snapshot(t); len(r.body) < 4096 || len(g) < 4096 || !bytes.Equal(r.body[16:20], magic) || !bytes.Equal(g[16:20], magic) {
			t.Errorf("REST snapshot has %d bytes, gRPC's %d: not both bbolt files", len(r.body), len(g))
		}
		if !bytes.Contains(r.body, []byte(fx.job)) {
			t.Errorf("the snapshot lacks job %s", fx.job)
		}
	})

	// Changes, each checked through gRPC.
	post := func(t *testing.T, rt route, path string, body any, m proto.Message) {
		t.Helper()
		called[rt] = true
		s.rest(t, tok, strings.Fields(string(rt))[0], path, body).ok(t, path, m)
	}
	t.Run("jobs", func(t *testing.T) {
		var sub pb.SubmitResponse
		post(t, "POST /v1/jobs", "/v1/jobs", `{"spec":{"name":"via-rest","command":["sh","-c","echo rest"]}}`, &sub)
		if j := s.waitDone(t, sub.GetId()); j.GetSpec().GetName() != "via-rest" {
			t.Errorf("submitted job: %v", j)
		}
		var batch pb.SubmitBatchResponse
		post(t, "POST /v1/jobs:batch", "/v1/jobs:batch", `{"specs":[{"command":["true"]},{"command":["true"],"name":"second"}]}`, &batch)
		if len(batch.GetIds()) != 2 {
			t.Fatalf("batch ids %v", batch.GetIds())
		}
		for _, id := range batch.GetIds() {
			s.waitDone(t, id)
		}
		long := s.submit(t, &pb.JobSpec{Command: []string{"sleep", "60"}})
		var cancelled pb.Job
		post(t, "POST /v1/jobs/{id}:cancel", "/v1/jobs/"+long+":cancel", `{"reason":"from rest"}`, &cancelled)
		if j := s.waitJob(t, long, func(j *pb.Job) bool { return job.State(j.GetState()).Terminal() }); j.GetState() != pb.JobState_JOB_STATE_CANCELLED {
			t.Errorf("cancelled job ended %s", j.GetState())
		}
		arr, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"sleep", "60"}}, Array: "0-3%1"})
		if err != nil {
			t.Fatal(err)
		}
		var ca pb.CancelArrayResponse
		post(t, "POST /v1/arrays/{id}:cancel", "/v1/arrays/"+arr.GetId()+":cancel", `{}`, &ca)
		if ca.GetCount() != 4 {
			t.Errorf("array cancel: %v", &ca)
		}
		for _, id := range arr.GetIds() {
			s.waitJob(t, id, func(j *pb.Job) bool { return j.GetState() == pb.JobState_JOB_STATE_CANCELLED })
		}
	})
	t.Run("pipelines", func(t *testing.T) {
		var ps pb.PipelineStatus
		post(t, "POST /v1/pipelines", "/v1/pipelines",
			`{"spec":{"name":"rp","steps":[{"name":"a","spec":{"command":["sleep","60"]}},{"name":"b","needs":["a"],"spec":{"command":["true"]}}]}}`, &ps)
		id := ps.GetPipeline().GetId()
		if g, err := s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: id}); err != nil || len(g.GetJobs()) != 2 {
			t.Fatalf("pipeline %s through gRPC: %v %v", id, g, err)
		}
		post(t, "POST /v1/pipelines/{id}:cancel", "/v1/pipelines/"+id+":cancel", `{}`, nil)
		g, err := s.jobs.GetPipeline(ctx, &pb.GetPipelineRequest{Id: id})
		if err != nil || !g.GetPipeline().GetCancelled() {
			t.Errorf("pipeline after cancel: %v %v", g, err)
		}
	})
	t.Run("cron", func(t *testing.T) {
		post(t, "POST /v1/cron", "/v1/cron", `{"schedule":{"name":"hourly","schedule":"0 * * * *","job":{"command":["true"]}}}`, nil)
		c, err := s.jobs.CronGet(ctx, &pb.CronRef{Name: "hourly"})
		if err != nil || c.GetSchedule() != "0 * * * *" {
			t.Fatalf("cron added through REST: %v %v", c, err)
		}
		post(t, "POST /v1/cron/{name}:pause", "/v1/cron/hourly:pause", `{}`, nil)
		if c, _ := s.jobs.CronGet(ctx, &pb.CronRef{Name: "hourly"}); !c.GetPaused() {
			t.Errorf("not paused: %v", c)
		}
		post(t, "POST /v1/cron/{name}:resume", "/v1/cron/hourly:resume", `{}`, nil)
		if c, _ := s.jobs.CronGet(ctx, &pb.CronRef{Name: "hourly"}); c.GetPaused() {
			t.Errorf("still paused: %v", c)
		}
		var run pb.CronRunResponse
		post(t, "POST /v1/cron/{name}:run", "/v1/cron/hourly:run", `{}`, &run)
		s.waitDone(t, run.GetId())
		post(t, "DELETE /v1/cron/{name}", "/v1/cron/hourly", nil, nil)
		if _, err := s.jobs.CronGet(ctx, &pb.CronRef{Name: "hourly"}); status.Code(err) != codes.NotFound {
			t.Errorf("removed schedule: %v", err)
		}
	})
	t.Run("tenants", func(t *testing.T) {
		post(t, "PUT /v1/tenants/{tenant.name}", "/v1/tenants/team", `{"tenant":{"weight":3,"maxQueued":"10"},"fields":["weight","max_queued"]}`, nil)
		tn, err := s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "team"})
		if err != nil || tn.GetTenant().GetWeight() != 3 || tn.GetTenant().GetMaxQueued() != 10 {
			t.Fatalf("tenant set through REST: %v %v", tn, err)
		}
		post(t, "DELETE /v1/tenants/{name}", "/v1/tenants/team", nil, nil)
		if _, err := s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "team"}); status.Code(err) != codes.NotFound {
			t.Errorf("deleted tenant: %v", err)
		}
	})
	t.Run("tokens", func(t *testing.T) {
		var ct pb.CreateTokenResponse
		post(t, "POST /v1/tokens", "/v1/tokens", `{"role":"viewer","name":"from-rest"}`, &ct)
		// The new token works, on gRPC too.
		if who, err := pb.NewAdminServiceClient(s.dialToken(t, ct.GetToken())).WhoAmI(ctx, &pb.WhoAmIRequest{}); err != nil || who.GetRole() != "viewer" {
			t.Fatalf("token created through REST: %v %v", who, err)
		}
		post(t, "POST /v1/tokens/{id}:revoke", "/v1/tokens/"+ct.GetInfo().GetId()+":revoke", `{}`, nil)
		if _, err := pb.NewAdminServiceClient(s.dialToken(t, ct.GetToken())).WhoAmI(ctx, &pb.WhoAmIRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Errorf("revoked token: %v", err)
		}
	})
	t.Run("workers", func(t *testing.T) {
		workerState := func() *pb.Worker {
			ws, err := s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{Id: fx.worker})
			if err != nil {
				t.Fatal(err)
			}
			return ws.GetWorkers()[0]
		}
		post(t, "POST /v1/workers/{id}:drain", "/v1/workers/"+fx.worker+":drain", `{}`, nil)
		if w := workerState(); w.GetState() != pb.WorkerState_WORKER_STATE_DRAINING {
			t.Errorf("drained worker: %s", w.GetState())
		}
		post(t, "POST /v1/workers/{id}:undrain", "/v1/workers/"+fx.worker+":undrain", `{}`, nil)
		if w := workerState(); w.GetState() != pb.WorkerState_WORKER_STATE_READY {
			t.Errorf("undrained worker: %s", w.GetState())
		}
		post(t, "POST /v1/workers/{id}:revoke", "/v1/workers/"+fx.worker+":revoke", `{}`, nil)
		if w := workerState(); !w.GetRevoked() {
			t.Errorf("revoked worker: %v", w)
		}
		// Removable once its stream has closed: 412 until then.
		called["DELETE /v1/workers/{id}"] = true
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			r := s.rest(t, tok, "DELETE", "/v1/workers/"+fx.worker, nil)
			if r.status == http.StatusOK {
				break
			}
			if r.status != http.StatusPreconditionFailed || time.Now().After(deadline) {
				t.Fatalf("remove worker: %d %s", r.status, r.body)
			}
			<-tick.C
		}
		if _, err := s.admin.ListWorkers(ctx, &pb.ListWorkersRequest{Id: fx.worker}); status.Code(err) != codes.NotFound {
			t.Errorf("removed worker: %v", err)
		}
	})

	// Every annotated route was called (the SSE streams have their own tests).
	var missed []string
	for _, r := range annotatedRoutes(t) {
		if !called[r] && r != "GET /v1/events" && r != "GET /v1/jobs/{id}/logs" {
			missed = append(missed, string(r))
		}
	}
	if len(missed) > 0 {
		t.Errorf("routes not called: %v", missed)
	}
}

// annotatedRoutes returns the routes of every RPC that hodei.proto
// annotates with google.api.http.
func annotatedRoutes(t *testing.T) []route {
	t.Helper()
	var out []route
	svcs := pb.File_hodei_proto.Services()
	for i := range svcs.Len() {
		ms := svcs.Get(i).Methods()
		for j := range ms.Len() {
			rule, ok := proto.GetExtension(ms.Get(j).Options(), annotations.E_Http).(*annotations.HttpRule)
			if !ok || rule == nil {
				continue
			}
			out = append(out, routeOf(rule))
		}
	}
	return out
}

func routeOf(r *annotations.HttpRule) route {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return route("GET " + p.Get)
	case *annotations.HttpRule_Post:
		return route("POST " + p.Post)
	case *annotations.HttpRule_Put:
		return route("PUT " + p.Put)
	case *annotations.HttpRule_Delete:
		return route("DELETE " + p.Delete)
	case *annotations.HttpRule_Patch:
		return route("PATCH " + p.Patch)
	}
	return ""
}

// TestRESTUnannotated lists the RPCs that stay gRPC only: the agent
// protocol and Attach (a bidirectional stream).
func TestRESTUnannotated(t *testing.T) {
	var grpcOnly []string
	svcs := pb.File_hodei_proto.Services()
	for i := range svcs.Len() {
		ms := svcs.Get(i).Methods()
		for j := range ms.Len() {
			m := ms.Get(j)
			if r, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule); r == nil {
				grpcOnly = append(grpcOnly, string(m.FullName()))
			}
		}
	}
	want := []string{"hodei.v1.AgentService.Connect", "hodei.v1.AgentService.Join", "hodei.v1.JobService.Attach"}
	sort.Strings(grpcOnly)
	if !slices.Equal(grpcOnly, want) {
		t.Errorf("RPCs without a REST route: %v, want %v", grpcOnly, want)
	}
}

// TestOpenAPIDocument validates /openapi.json with kin-openapi (as
// Swagger 2.0, converted to OpenAPI 3 and validated) and checks that it
// lists every route the server serves, with its method.
func TestOpenAPIDocument(t *testing.T) {
	s := setup(t)
	r := s.rest(t, "", "GET", "/openapi.json", nil) // open, like /healthz
	r.ok(t, "openapi.json", nil)
	if !bytes.Equal(r.body, pb.OpenAPI) {
		t.Fatal("/openapi.json is not the generated document")
	}
	var doc2 openapi2.T
	if err := json.Unmarshal(r.body, &doc2); err != nil {
		t.Fatal(err)
	}
	doc3, err := openapi2conv.ToV3(&doc2)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc3.Validate(context.Background()); err != nil {
		t.Fatalf("invalid OpenAPI: %v", err)
	}
	listed := map[route]bool{}
	for path, item := range doc3.Paths.Map() {
		for method := range item.Operations() {
			listed[route(method+" "+path)] = true
		}
	}
	routes := annotatedRoutes(t)
	if len(routes) != len(listed) {
		t.Errorf("the document lists %d routes, the proto annotates %d", len(listed), len(routes))
	}
	for _, rt := range routes {
		// SetTenant's path parameter is tenant.name, listed as {name}.
		if !listed[route(strings.Replace(string(rt), "{tenant.name}", "{name}", 1))] {
			t.Errorf("%s is not in /openapi.json", rt)
		}
		// And the server serves it: a route it does not know is a 404
		// naming no route; a known one answers otherwise (here 401: no token).
		method, path, _ := strings.Cut(string(rt), " ")
		path = strings.NewReplacer("{id}", "x", "{name}", "x", "{tenant.name}", "x").Replace(path)
		if got := s.rest(t, "", method, path, nil); got.status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d %s, want 401", method, path, got.status, got.body)
		}
	}
	for _, name := range []string{"HttpError", "Job", "JobSpec"} {
		if _, ok := doc3.Components.Schemas["v1"+name]; !ok {
			t.Errorf("schema v1%s missing", name)
		}
	}
	// The streams are described as what they send: an event stream or
	// raw bytes, not JSON ({"result": …} is what the gateway would send).
	for path, media := range map[string]string{"/v1/events": "text/event-stream", "/v1/jobs/{id}/logs": "text/event-stream",
		"/v1/snapshot": "application/octet-stream"} {
		op := doc2.Paths[path].Get
		if op == nil {
			t.Errorf("GET %s missing", path)
			continue
		}
		ok := op.Responses.Value("200")
		if !slices.Equal(op.Produces, []string{media}) || ok == nil || ok.Schema == nil || ok.Schema.Value == nil ||
			!ok.Schema.Value.Type.Is("string") || len(ok.Schema.Value.Properties) != 0 || !strings.Contains(ok.Description, media) {
			b, _ := json.Marshal(op.Responses)
			t.Errorf("GET %s: produces %v, 200 %s; want %s described as a string", path, op.Produces, b, media)
		}
	}
}

// TestRESTErrors checks the JSON error of each gRPC code the API returns,
// with its HTTP status and field, on a real server.
func TestRESTErrors(t *testing.T) {
	s := setup(t)
	tok := s.adminToken(t)
	viewer, _ := s.createToken(t, "viewer")
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	if _, err := s.jobs.CronAdd(context.Background(), &pb.CronAddRequest{Schedule: &pb.CronSchedule{
		Name: "dup", Schedule: "0 3 * * *", Job: &pb.JobSpec{Command: []string{"true"}}}}); err != nil {
		t.Fatal(err)
	}
	s.setTenant(t, &pb.Tenant{Name: "tiny", MaxQueued: 1})
	s.submit(t, &pb.JobSpec{Tenant: "tiny", Command: []string{"true"}})
	big := `{"spec":{"command":["echo","` + strings.Repeat("x", maxRESTBody) + `"]}}`

	for _, c := range []struct {
		name, token, method, path string
		body                      any
		header                    map[string]string
		status                    int
		code                      codes.Code
		field, msg                string
	}{
		{"InvalidArgument", tok, "POST", "/v1/jobs", `{"spec":{"command":["true"],"timeoutMs":"-1"}}`, nil, 400, codes.InvalidArgument, "spec.timeoutMs", "spec.timeoutMs (timeout): must not be negative"},
		{"InvalidArgumentBatchField", tok, "POST", "/v1/jobs:batch", `{"specs":[{"command":["true"]},{"script":""}]}`, nil, 400, codes.InvalidArgument, "specs[1].command", "specs[1]"},
		{"UnknownField", tok, "POST", "/v1/jobs", `{"spec":{"comand":["true"]}}`, nil, 400, codes.InvalidArgument, "spec.comand", `unknown field "comand" in spec (a JobSpec)`},
		{"MalformedJSON", tok, "POST", "/v1/jobs", `{"spec":`, nil, 400, codes.InvalidArgument, "", "not valid JSON"},
		{"UnknownQueryParameter", tok, "GET", "/v1/jobs?limit=50", nil, nil, 400, codes.InvalidArgument, "limit", `unknown query parameter "limit": ListJobsRequest takes state, tenant, labels, pageSize`},
		{"BadEnum", tok, "GET", "/v1/jobs?state=BOGUS", nil, nil, 400, codes.InvalidArgument, "state", `"BOGUS" is not one of pending`},
		{"Unauthenticated", "", "GET", "/v1/jobs", nil, nil, 401, codes.Unauthenticated, "", "no token"},
		{"BadToken", "not-a-token", "GET", "/v1/jobs", nil, nil, 401, codes.Unauthenticated, "", ""},
		{"PermissionDenied", viewer, "POST", "/v1/jobs/" + id + ":cancel", `{}`, nil, 403, codes.PermissionDenied, "", "Cancel"},
		{"NotFound", tok, "GET", "/v1/jobs/7ZZZZZZZZZ", nil, nil, 404, codes.NotFound, "", "7ZZZZZZZZZ"},
		{"AlreadyExists", tok, "POST", "/v1/cron", `{"schedule":{"name":"dup","schedule":"0 3 * * *","job":{"command":["true"]}}}`, nil, 409, codes.AlreadyExists, "", "dup"},
		{"FailedPrecondition", tok, "DELETE", "/v1/tenants/default", nil, nil, 412, codes.FailedPrecondition, "", "default"},
		{"ResourceExhausted", tok, "POST", "/v1/jobs", `{"spec":{"tenant":"tiny","command":["true"]}}`, nil, 429, codes.ResourceExhausted, "", "tiny"},
		{"DeadlineExceeded", tok, "GET", "/v1/jobs", nil, map[string]string{"Grpc-Timeout": "1n"}, 504, codes.DeadlineExceeded, "", ""},
		{"TooLarge", tok, "POST", "/v1/jobs", big, nil, 413, codes.ResourceExhausted, "", "the server takes at most"},
		{"UnknownRoute", tok, "GET", "/v1/nothing/here", nil, nil, 404, codes.NotFound, "", "no route GET /v1/nothing/here"},
		{"WrongMethod", tok, "DELETE", "/v1/jobs", nil, nil, 405, codes.Unimplemented, "", "DELETE is not allowed on /v1/jobs; it takes GET, POST"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.restWith(t, c.token, c.method, c.path, c.body, c.header)
			e := r.httpErr(t)
			if r.status != c.status || codes.Code(e.GetCode()) != c.code || e.GetStatus() != strings.ToUpper(snake(c.code.String())) ||
				e.GetField() != c.field || !strings.Contains(e.GetMessage(), c.msg) {
				t.Errorf("got %d %s, want %d code %d (%s) field %q message with %q", r.status, r.body, c.status, c.code, c.code, c.field, c.msg)
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// snake turns a code's Go name into its proto enum name's words:
// NotFound → Not_Found.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestRESTErrorMapping checks the HTTP status of every gRPC code.
func TestRESTErrorMapping(t *testing.T) {
	want := map[codes.Code]int{
		codes.Canceled: 499, codes.Unknown: 500, codes.InvalidArgument: 400, codes.DeadlineExceeded: 504,
		codes.NotFound: 404, codes.AlreadyExists: 409, codes.PermissionDenied: 403, codes.ResourceExhausted: 429,
		codes.FailedPrecondition: 412, codes.Aborted: 409, codes.OutOfRange: 400, codes.Unimplemented: 501,
		codes.Internal: 500, codes.Unavailable: 503, codes.DataLoss: 500, codes.Unauthenticated: 401,
	}
	for c, st := range want {
		e := errorOf(withField(status.New(c, "m"), "f", "rule"))
		if e.status != st || e.body.GetCode() != int32(c) || e.body.GetField() != "f" || e.body.GetMessage() != "m" {
			t.Errorf("%s: %d %v, want %d", c, e.status, e.body, st)
		}
	}
}

// restWith is rest with extra request headers.
func (s *sut) restWith(t testing.TB, token, method, path string, body any, header map[string]string) restResp {
	t.Helper()
	if len(header) == 0 {
		return s.rest(t, token, method, path, body)
	}
	var rd io.Reader
	if b, ok := body.(string); ok {
		rd = strings.NewReader(b)
	}
	req, err := http.NewRequest(method, s.httpURL(path), rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return restResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestRESTAudit checks that a change made through REST is audited as its
// gRPC call, with the HTTP client's address (not the gateway's
// in-process connection), and a denial too.
func TestRESTAudit(t *testing.T) {
	s := setup(t)
	viewer, _ := s.createToken(t, "viewer")
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	var sub pb.SubmitResponse
	s.rest(t, s.adminToken(t), "POST", "/v1/jobs", `{"spec":{"command":["true"]}}`).ok(t, "submit", &sub)
	s.rest(t, viewer, "POST", "/v1/jobs/"+id+":cancel", `{}`)
	recs := s.waitAudit(t, 4) // the token, the two submits, the denial
	peers := map[string]string{}
	for _, r := range recs {
		switch {
		case r.GetTarget() == id && strings.HasSuffix(r.GetAction(), "/Submit"):
			peers["grpc"] = r.GetPeer()
		case r.GetTarget() == sub.GetId():
			peers["rest"] = r.GetPeer()
		case r.GetResult() == "PermissionDenied" && r.GetTarget() == id && strings.HasSuffix(r.GetAction(), "/Cancel"):
			peers["denied"] = r.GetPeer()
		}
	}
	for _, k := range []string{"rest", "denied"} {
		if p := peers[k]; !strings.HasPrefix(p, "127.0.0.1:") || p == peers["grpc"] {
			t.Errorf("%s record's peer %q: want the HTTP client's address (the gRPC client's is %q)", k, p, peers["grpc"])
		}
	}
}

// TestHTTPSRule checks where the HTTP listener serves HTTPS: on a
// loopback address plain HTTP (a browser's secure context), elsewhere
// HTTPS with the gRPC certificate, so that tokens never cross a network
// in clear. The test runs on loopback only; the second server's listener
// reports a non-loopback address (TEST-NET 192.0.2.1) while it listens on
// 127.0.0.1.
func TestHTTPSRule(t *testing.T) {
	get := func(t *testing.T, hc *http.Client, url, token string) (int, error) {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	t.Run("LoopbackPlain", func(t *testing.T) {
		s := setup(t)
		if u := s.srv.HTTPURL(); !strings.HasPrefix(u, "http://127.0.0.1:") {
			t.Fatalf("HTTPURL %s", u)
		}
		if st, err := get(t, http.DefaultClient, "http://"+s.srv.HTTPAddr()+"/v1/whoami", s.adminToken(t)); err != nil || st != 200 {
			t.Errorf("plain HTTP on loopback: %d %v", st, err)
		}
		hc := s.httpClient(t)
		defer hc.CloseIdleConnections()
		if _, err := get(t, hc, "https://"+s.srv.HTTPAddr()+"/healthz", ""); err == nil {
			t.Error("HTTPS on a loopback listener: want plain HTTP only")
		}
	})
	t.Run("ElsewhereHTTPS", func(t *testing.T) {
		srv, err := New(context.Background(), Config{DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Listen(); err != nil {
			t.Fatal(err)
		}
		srv.httpLis = addrListener{srv.httpLis, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: srv.httpLis.Addr().(*net.TCPAddr).Port}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		if u := srv.HTTPURL(); !strings.HasPrefix(u, "https://192.0.2.1:") {
			t.Fatalf("HTTPURL %s", u)
		}
		real := srv.httpLis.(addrListener).Listener.Addr().String()
		other := &sut{srv: srv, dir: srv.DataDir()}
		hc := other.httpClient(t)
		defer hc.CloseIdleConnections()
		hc.Transport.(*http.Transport).TLSClientConfig.ServerName = "127.0.0.1"
		tok := other.adminToken(t)
		if st, err := get(t, hc, "https://"+real+"/v1/whoami", tok); err != nil || st != 200 {
			t.Errorf("HTTPS with the server's certificate: %d %v", st, err)
		}
		if st, err := get(t, http.DefaultClient, "http://"+real+"/v1/whoami", tok); err == nil && st != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS listener: %d, want refused", st)
		}
	})
}

// addrListener is a listener that reports another address than its own.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }
