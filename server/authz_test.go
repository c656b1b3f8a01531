package server

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/pki"
	pb "github.com/hodei-jobs/hodei/proto"
)

// credential is one column of the authorization matrix.
type credential struct {
	name  string
	token string
	// role and tenants of a valid token; "" for the refused ones.
	role    auth.Role
	tenants []string
}

// fixture holds the objects the matrix's requests point at, all of the
// default tenant.
type fixture struct {
	job, pipeline, array, token, worker string
	csr                                 []byte
}

// TestAuthorizationMatrix calls every method of every registered service
// with every kind of credential and checks the code of each cell: bad
// credentials are Unauthenticated, a role without the method's permission
// is PermissionDenied, an object of a tenant outside the token's scope is
// NotFound, and everything else gets past authorization. A new RPC is in
// the matrix without editing this test.
func TestAuthorizationMatrix(t *testing.T) {
	s := setup(t)
	s.srv.denials.set(1, 1e9) // every denial of the matrix on record
	ctx := context.Background()
	s.setTenant(t, &pb.Tenant{Name: "other"})
	fx := s.matrixFixture(t)
	creds := s.matrixCredentials(t)

	services := s.srv.grpc.GetServiceInfo()
	if len(services) < 4 {
		t.Fatalf("registered services = %v", services)
	}
	denials := 0
	for svc, info := range services {
		for _, m := range info.Methods {
			method := "/" + svc + "/" + m.Name
			r, known := ruleOf(method)
			for _, c := range creds {
				t.Run(svc+"."+m.Name+"/"+c.name, func(t *testing.T) {
					got := s.invoke(t, method, m, c.token, fx)
					want, allowed := expect(method, r, known, c)
					switch {
					case allowed && (got == codes.Unauthenticated || got == codes.PermissionDenied):
						t.Errorf("%s with %s: %s, want it past authorization", method, c.name, got)
					case !allowed && got != want:
						t.Errorf("%s with %s: %s, want %s", method, c.name, got, want)
					}
					if !allowed && (want == codes.Unauthenticated || want == codes.PermissionDenied) {
						denials++
					}
				})
			}
		}
	}
	s.checkDenialsAudited(t, ctx, denials)
}

// expect is the code a cell must get, or allowed when any code past
// authorization will do.
func expect(method string, r rule, known bool, c credential) (want codes.Code, allowed bool) {
	if !known {
		return codes.PermissionDenied, false
	}
	if r.open {
		return codes.OK, true
	}
	if c.role == "" {
		return codes.Unauthenticated, false
	}
	id := &auth.Identity{Role: c.role, Tenants: c.tenants}
	if r.perm == auth.RunJobs || id.Allow(r.perm) != nil {
		return codes.PermissionDenied, false // the agent stream takes a certificate, never a token
	}
	if id.Scoped() && targetsDefaultTenant(method) {
		return codes.NotFound, false
	}
	if id.Scoped() && (method == pb.AdminService_SetTenant_FullMethodName || method == pb.AdminService_DeleteTenant_FullMethodName) {
		return codes.PermissionDenied, false // a tenant outside its scope
	}
	return codes.OK, true
}

// targetsDefaultTenant reports whether the matrix request of method names
// an object of the default tenant.
func targetsDefaultTenant(method string) bool {
	switch method {
	case pb.JobService_Get_FullMethodName, pb.JobService_Cancel_FullMethodName, pb.JobService_Watch_FullMethodName,
		pb.JobService_Logs_FullMethodName, pb.JobService_CancelArray_FullMethodName,
		pb.JobService_GetPipeline_FullMethodName, pb.JobService_CancelPipeline_FullMethodName,
		pb.AdminService_GetTenant_FullMethodName:
		return true
	}
	return false
}

func (s *sut) matrixFixture(t *testing.T) fixture {
	t.Helper()
	ctx := context.Background()
	var fx fixture
	fx.job = s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	arr, err := s.jobs.Submit(ctx, &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}}, Array: "0-1"})
	if err != nil {
		t.Fatal(err)
	}
	fx.array = arr.GetId()
	p, err := s.jobs.RunPipeline(ctx, &pb.RunPipelineRequest{Spec: &pb.PipelineSpec{Name: "m",
		Steps: []*pb.PipelineStepSpec{{Name: "a", Spec: &pb.JobSpec{Command: []string{"true"}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	fx.pipeline = p.GetPipeline().GetId()
	_, info := s.createToken(t, "viewer")
	fx.token = info.GetId()
	fx.worker = "w-matrix"
	if _, fx.csr, err = pki.NewKeyAndCSR(fx.worker); err != nil {
		t.Fatal(err)
	}
	return fx
}

// matrixCredentials are the columns: refused tokens of every kind, each
// role, a token of another tenant.
func (s *sut) matrixCredentials(t *testing.T) []credential {
	t.Helper()
	key, _, err := auth.LoadOrCreateKey(filepath.Join(s.dir, TokenKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"jti": "01J00000000000000000000000", "iss": auth.Issuer, "aud": auth.Audience,
			"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "role": "admin", "name": "forged"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	signed := func(c jwt.MapClaims) string {
		text, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return text
	}
	admin := s.adminToken(t)
	revoked, info := s.createToken(t, "admin")
	if _, err := s.admin.RevokeToken(context.Background(), &pb.RevokeTokenRequest{Id: info.GetId()}); err != nil {
		t.Fatal(err)
	}
	// An id the server knows, so that only the claim under test is wrong.
	_, known := s.createToken(t, "admin")
	withID := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		return valid(func(c jwt.MapClaims) {
			c["jti"] = known.GetId()
			if mod != nil {
				mod(c)
			}
		})
	}
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, withID(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := jwt.NewWithClaims(jwt.SigningMethodHS256, withID(nil)).SignedString([]byte(key.Public().(ed25519.PublicKey)))
	if err != nil {
		t.Fatal(err)
	}
	creds := []credential{
		{name: "none"},
		{name: "garbage", token: "garbage"},
		{name: "expired", token: signed(withID(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }))},
		{name: "not-yet-valid", token: signed(withID(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }))},
		{name: "wrong-audience", token: signed(withID(func(c jwt.MapClaims) { c["aud"] = "someone-else" }))},
		{name: "wrong-issuer", token: signed(withID(func(c jwt.MapClaims) { c["iss"] = "someone-else" }))},
		{name: "no-expiry", token: signed(withID(func(c jwt.MapClaims) { delete(c, "exp") }))},
		{name: "alg-none", token: none},
		{name: "hs256-with-public-key", token: hs},
		{name: "tampered", token: tamper(t, admin)},
		{name: "unknown-id", token: signed(valid(nil))},
		{name: "revoked", token: revoked},
		{name: "10KB", token: strings.Repeat("a", 10<<10)},
	}
	for _, r := range auth.Roles {
		tok, _ := s.createToken(t, string(r))
		creds = append(creds, credential{name: string(r), token: tok, role: r})
	}
	for _, r := range []auth.Role{auth.Operator, auth.Submitter, auth.Viewer} {
		tok, _ := s.createToken(t, string(r), "other")
		creds = append(creds, credential{name: string(r) + "-of-other-tenant", token: tok, role: r, tenants: []string{"other"}})
	}
	return creds
}

// tamper changes the role claim of a valid token and keeps its signature.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = []byte(strings.Replace(string(payload), `"name":"admin"`, `"name":"admin2"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

// invoke calls method with a request aimed at the fixture and returns the
// status code. A streaming call that got a first message is OK; one still
// open at the deadline has passed authorization (refusals are immediate).
func (s *sut) invoke(t *testing.T, method string, m grpc.MethodInfo, token string, fx fixture) codes.Code {
	t.Helper()
	conn := s.dialToken(t, token)
	req, resp := s.messages(t, method, fx)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var err error
	if !m.IsClientStream && !m.IsServerStream {
		err = conn.Invoke(ctx, method, req, resp)
	} else {
		var st grpc.ClientStream
		st, err = conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: m.IsServerStream, ClientStreams: m.IsClientStream}, method)
		if err == nil {
			// A refused stream fails the send with io.EOF; its status
			// comes from the receive.
			if err = st.SendMsg(req); err == nil || errors.Is(err, io.EOF) {
				st.CloseSend()
				err = st.RecvMsg(resp)
			}
		}
	}
	if status.Code(err) == codes.DeadlineExceeded {
		return codes.OK
	}
	if errors.Is(err, io.EOF) {
		return codes.OK // a stream that ended cleanly with nothing to send
	}
	return status.Code(err)
}

// messages returns a request for method aimed at the fixture, and an empty
// response, both of the method's own types from the descriptors.
func (s *sut) messages(t *testing.T, method string, fx fixture) (proto.Message, proto.Message) {
	t.Helper()
	svc, name, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		t.Fatalf("descriptor of %s: %v", svc, err)
	}
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(name))
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		t.Fatal(err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	req := in.New().Interface()
	switch r := req.(type) {
	case *pb.SubmitRequest:
		r.Spec = &pb.JobSpec{Command: []string{"true"}}
	case *pb.SubmitBatchRequest:
		r.Specs = []*pb.JobSpec{{Command: []string{"true"}}}
	case *pb.GetJobRequest:
		r.Id = fx.job
	case *pb.CancelJobRequest:
		r.Id = fx.job
	case *pb.WatchRequest:
		r.JobId = fx.job
	case *pb.LogsRequest:
		r.Id = fx.job
	case *pb.CancelArrayRequest:
		r.Id = fx.array
	case *pb.RunPipelineRequest:
		r.Spec = &pb.PipelineSpec{Name: "p", Steps: []*pb.PipelineStepSpec{{Name: "a", Spec: &pb.JobSpec{Command: []string{"true"}}}}}
	case *pb.GetPipelineRequest:
		r.Id = fx.pipeline
	case *pb.CancelPipelineRequest:
		r.Id = fx.pipeline
	case *pb.GetTenantRequest:
		r.Name = "default"
	case *pb.SetTenantRequest:
		r.Tenant, r.Fields = &pb.Tenant{Name: "default", Weight: 1}, []string{"weight"}
	case *pb.DeleteTenantRequest:
		r.Name = "nonexistent"
	case *pb.DrainWorkerRequest:
		r.Id = fx.worker
	case *pb.UndrainWorkerRequest:
		r.Id = fx.worker
	case *pb.RevokeWorkerRequest:
		r.Id = fx.worker
	case *pb.RemoveWorkerRequest:
		r.Id = "nonexistent"
	case *pb.CreateTokenRequest:
		r.Role = "viewer"
	case *pb.RevokeTokenRequest:
		r.Id = fx.token
	case *pb.JoinRequest:
		r.WorkerId, r.CsrDer = fx.worker, fx.csr
	}
	return req, out.New().Interface()
}

// checkDenialsAudited checks that the audit log holds one denial record
// per denied cell, each naming the method.
func (s *sut) checkDenialsAudited(t *testing.T, ctx context.Context, denials int) {
	t.Helper()
	isDenial := func(r *pb.AuditRecord) bool {
		return r.GetResult() == codes.Unauthenticated.String() || r.GetResult() == codes.PermissionDenied.String()
	}
	var got []*pb.AuditRecord
	s.waitAuditFor(t, fmt.Sprintf("%d denials", denials), func(rs []*pb.AuditRecord) bool {
		got = slices.DeleteFunc(slices.Clone(rs), func(r *pb.AuditRecord) bool { return !isDenial(r) })
		return len(got) >= denials
	})
	if len(got) != denials {
		t.Fatalf("%d denial records in the audit log, want %d", len(got), denials)
	}
	for _, r := range got {
		if _, known := ruleOf(r.GetAction()); !known || r.GetMessage() == "" || r.GetTimeUnixNano() == 0 || r.GetPeer() == "" {
			t.Errorf("incomplete denial record %v", r)
		}
	}
}
