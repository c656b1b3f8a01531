package server

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/hodei-jobs/hodei/proto"
)

// TestRESTErrorFields checks that every 400 of the REST API names the
// request field at fault by its JSON name, the one a REST client writes,
// and says plainly what is wrong: the gateway's own refusals (an unknown
// body field, a value of the wrong type, a query parameter that does not
// parse) as well as the server's, whose field names are the domain's.
func TestRESTErrorFields(t *testing.T) {
	s := setup(t)
	tok := s.adminToken(t)
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	for _, c := range []struct {
		name, method, path string
		body               any
		field              string
		msg                []string
	}{
		{"UnknownTopField", "POST", "/v1/jobs", `{"spec":{"command":["true"]},"name":"x"}`,
			"name", []string{`unknown field "name" in the body of Submit: it takes spec, array, requireFit`}},
		{"UnknownNestedField", "POST", "/v1/jobs", `{"spec":{"comand":["true"]}}`,
			"spec.comand", []string{`unknown field "comand" in spec (a JobSpec): it takes name, tenant`}},
		{"WrongType", "POST", "/v1/jobs", `{"spec":{"command":["true"],"priority":"high"}}`,
			"spec.priority", []string{`spec.priority: "high" is not a whole number (int32)`}},
		{"WrongTypeInList", "POST", "/v1/jobs:batch", `{"specs":[{"command":["true"]},{"command":"true"}]}`,
			"specs[1].command", []string{`specs[1].command: "true" is not a list whose items are each a string`}},
		{"WrongTypeInMap", "POST", "/v1/jobs", `{"spec":{"command":["true"],"labels":{"k":1}}}`,
			"spec.labels", []string{`spec.labels: {"k":1} is not an object whose values are each a string`}},
		{"NotAnObject", "POST", "/v1/jobs", `{"spec":[1]}`,
			"spec", []string{`spec: [1] is not an object (a JobSpec)`}},
		{"BadQueryNumber", "GET", "/v1/jobs?pageSize=abc", nil,
			"pageSize", []string{`query parameter pageSize: "abc" is not a whole number (int32)`}},
		{"BadQueryNumberProtoName", "GET", "/v1/jobs?page_size=abc", nil,
			"pageSize", []string{`query parameter page_size: "abc" is not a whole number (int32)`}},
		{"BadQueryBool", "GET", "/v1/jobs?newestFirst=yes", nil,
			"newestFirst", []string{`"yes" is not true or false`}},
		{"BadQueryEnum", "GET", "/v1/jobs?state=BOGUS", nil,
			"state", []string{`query parameter state: "BOGUS" is not one of pending, scheduled, running, completed, failed, cancelled (or the full names, JOB_STATE_PENDING`}},
		{"BadKind", "GET", "/v1/resolve?kind=thing&prefix=0", nil,
			"kind", []string{`one of job, array, pipeline, worker (or the full names, ID_KIND_JOB`}},
		{"UnknownQueryParameter", "GET", "/v1/jobs?limit=50", nil,
			"limit", []string{`unknown query parameter "limit": ListJobsRequest takes state, tenant, labels, pageSize`}},
		{"SameFieldTwice", "GET", "/v1/jobs?pageSize=1&page_size=2", nil,
			"pageSize", []string{`"pageSize" and "page_size" set the same field`}},
		{"ServerQueryField", "GET", "/v1/jobs?pageSize=5000", nil,
			"pageSize", []string{"pageSize (page_size): 5000 must be between 0 and"}},
		{"ServerQueryFieldUsage", "GET", "/v1/usage?groupBy=host", nil,
			"groupBy", []string{"groupBy (group_by): "}},
		{"ServerBodyField", "POST", "/v1/jobs", `{"spec":{"command":["true"],"timeoutMs":"-1"}}`,
			"spec.timeoutMs", []string{"spec.timeoutMs (timeout): ", "must not be negative"}},
		{"ServerBodyFieldTenant", "PUT", "/v1/tenants/lab", `{"tenant":{"name":"lab","weight":-2}}`,
			"tenant.weight", []string{"tenant.weight (weight): "}},
		{"ServerBatchField", "POST", "/v1/jobs:batch", `{"specs":[{"command":["true"]},{"script":""}]}`,
			"specs[1].command", []string{"specs[1]"}},
		{"ServerPipelineStep", "POST", "/v1/pipelines", `{"spec":{"name":"p","steps":[{"name":"a","spec":{"command":["true"]},"needs":["zz"]}]}}`,
			"spec.steps.a.needs", []string{"spec.steps.a.needs (steps.a.needs): "}},
		{"EventsUnknownParameter", "GET", "/v1/events?pageSize=1", nil,
			"pageSize", []string{`unknown query parameter "pageSize": WatchRequest takes`}},
		{"EventsBadState", "GET", "/v1/events?state=bogus", nil,
			"state", []string{`"bogus" is not one of pending`}},
		{"LogsBadFollow", "GET", "/v1/jobs/" + id + "/logs?follow=yes", nil,
			"follow", []string{`query parameter follow: "yes" is not true or false`}},
		{"LogsServerField", "GET", "/v1/jobs/" + id + "/logs?offset=-1", nil,
			"offset", []string{"offset: must not be negative"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := s.rest(t, tok, c.method, c.path, c.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("got %d %s, want 400", r.status, r.body)
			}
			e := r.httpErr(t)
			if e.GetField() != c.field || codes.Code(e.GetCode()) != codes.InvalidArgument {
				t.Errorf("field %q code %d, want %q: %s", e.GetField(), e.GetCode(), c.field, r.body)
			}
			for _, m := range c.msg {
				if !strings.Contains(e.GetMessage(), m) {
					t.Errorf("message %q, want it to hold %q", e.GetMessage(), m)
				}
			}
			if strings.Contains(e.GetMessage(), "proto:") || strings.Contains(e.GetMessage(), "(line ") {
				t.Errorf("message %q carries protojson's internals", e.GetMessage())
			}
		})
	}

	// gRPC keeps the server's own names, in the detail and the message.
	_, err := s.jobs.List(context.Background(), &pb.ListJobsRequest{PageSize: 5000})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "page_size: ") || fieldOf(st) != "page_size" {
		t.Errorf("gRPC: %v (field %q), want page_size as it was", err, fieldOf(st))
	}
}

func fieldOf(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	return ""
}

// TestRESTEnumShortNames checks that an enum query parameter takes the
// short name of a value (job for ID_KIND_JOB, running or RUNNING for
// JOB_STATE_RUNNING) as well as its full name.
func TestRESTEnumShortNames(t *testing.T) {
	s := setup(t)
	tok := s.adminToken(t)
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	for _, kind := range []string{"job", "JOB", "ID_KIND_JOB", "1"} {
		var got pb.ResolveResponse
		s.rest(t, tok, "GET", "/v1/resolve?kind="+kind+"&prefix="+strings.ToLower(id[:8]), nil).ok(t, "resolve kind="+kind, &got)
		if got.GetId() != id {
			t.Errorf("kind=%s: resolved %v, want %s", kind, &got, id)
		}
	}
	for _, state := range []string{"pending", "PENDING", "Pending", "JOB_STATE_PENDING"} {
		var got pb.ListJobsResponse
		s.rest(t, tok, "GET", "/v1/jobs?state="+state, nil).ok(t, "list state="+state, &got)
		if len(got.GetJobs()) != 1 || got.GetJobs()[0].GetId() != id {
			t.Errorf("state=%s: %v, want the one pending job", state, &got)
		}
		s.rest(t, tok, "GET", "/v1/jobs?state=running", nil).ok(t, "list running", &got)
		if len(got.GetJobs()) != 0 {
			t.Errorf("state=running: %v, want none (no worker)", &got)
		}
	}
}

// TestRESTMethodNotAllowed checks that a 405 says in Allow which methods
// the path takes, as RFC 9110 asks, and in its message.
func TestRESTMethodNotAllowed(t *testing.T) {
	s := setup(t)
	tok := s.adminToken(t)
	for _, c := range []struct {
		method, path string
		allow        []string
	}{
		{"DELETE", "/v1/jobs", []string{"GET", "POST"}},
		{"PUT", "/v1/jobs/0123456789", []string{"GET"}},
		{"PUT", "/v1/whoami", []string{"GET"}},
		{"PUT", "/v1/arrays/0123456789:cancel", []string{"POST"}},
		{"POST", "/v1/tenants/lab", []string{"GET", "PUT", "DELETE"}},
		{"POST", "/v1/events", []string{"GET"}},
	} {
		r := s.rest(t, tok, c.method, c.path, nil)
		if r.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d %s, want 405", c.method, c.path, r.status, r.body)
			continue
		}
		e := r.httpErr(t)
		allow := strings.Split(r.header.Get("Allow"), ", ")
		if !slices.Equal(allow, c.allow) || codes.Code(e.GetCode()) != codes.Unimplemented ||
			!strings.Contains(e.GetMessage(), "it takes "+strings.Join(c.allow, ", ")) {
			t.Errorf("%s %s: Allow %q, %s; want Allow %q", c.method, c.path, r.header.Get("Allow"), r.body, c.allow)
		}
	}
}
