package server

import (
	"cmp"
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// auditCall records one call: who (id, nil when not authenticated), what
// (the method or HTTP action), on which target and tenant, and the result.
// Only ids and names are taken from the request and answer, never a spec:
// a spec may hold secret values.
func (s *Server) auditCall(ctx context.Context, id *auth.Identity, action string, req, resp any, err error) {
	e := job.AuditEntry{Action: action, Result: job.AuditOK}
	if id != nil {
		e.TokenID, e.TokenName, e.Role, e.Scope = id.TokenID, id.Name, string(id.Role), id.Tenants
	}
	if err != nil {
		st := status.Convert(err)
		e.Result, e.Message = st.Code().String(), st.Message()
	}
	if addr, ok := restPeer(ctx); ok {
		e.Peer = addr // the HTTP client of a REST call, not the gateway's pipe
	} else if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		e.Peer = p.Addr.String()
	}
	e.Target, e.Tenant = auditTarget(req, resp)
	if e.Target == "" && id != nil && id.Worker != "" {
		e.Target = id.Worker // the agent stream
	}
	clipEntry(&e)
	if isDenial(err) || status.Code(err) == codes.NotFound {
		ok, suppressed := s.denials.allow(e.Peer, s.now())
		if !ok {
			s.auditLog.suppressed.Inc()
			return
		}
		noteSuppressed(&e, suppressed)
	}
	// A call whose client left is still recorded; the wait for room in
	// the queue is bounded by the writer (auditWait).
	s.audit(context.WithoutCancel(ctx), e)
}

// auditTarget names what a call acted on, from the ids and names of its
// request and answer.
func auditTarget(req, resp any) (target, tenant string) {
	if r, ok := req.(*pb.SubmitBatchRequest); ok {
		b, _ := resp.(*pb.SubmitBatchResponse)
		return batchAudit(r, b)
	}
	switch r := req.(type) {
	case *pb.SubmitRequest:
		tenant = cmp.Or(r.GetSpec().GetTenant(), job.DefaultTenant)
	case *pb.RunPipelineRequest:
		tenant = cmp.Or(r.GetSpec().GetTenant(), job.DefaultTenant)
	case *pb.SetTenantRequest:
		target, tenant = r.GetTenant().GetName(), r.GetTenant().GetName()
	case *pb.DeleteTenantRequest:
		target, tenant = r.GetName(), r.GetName()
	case *pb.CreateTokenRequest:
		// What was asked, so that a refused create names it too.
		target = strings.TrimSpace(cmp.Or(r.GetRole(), "(no role)") + " token " + r.GetName())
	case *pb.JoinRequest:
		target = r.GetWorkerId()
	case *pb.AttachOpen:
		target = r.GetJobId()
	case interface{ GetId() string }:
		target = r.GetId()
	}
	switch r := resp.(type) {
	case *pb.SubmitResponse:
		target = r.GetId()
	case *pb.Job:
		tenant = r.GetSpec().GetTenant()
	case *pb.PipelineStatus:
		target, tenant = r.GetPipeline().GetId(), r.GetPipeline().GetTenant()
	case *pb.CreateTokenResponse:
		if r.GetInfo() != nil { // nil when refused: the request's target stays
			target = r.GetInfo().GetId() + " (" + r.GetInfo().GetName() + ")"
		}
	}
	return target, tenant
}
