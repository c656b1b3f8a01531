package server

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// Join trades an agent join token for a client certificate bound to the
// agent's worker id. A worker id that joined before, with any credential,
// is refused: an id speaks for one certificate only.
func (a *agentService) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	s := a.srv
	if s.ca == nil {
		return nil, status.Error(codes.FailedPrecondition,
			"this server uses operator-given certificates (--tls-cert) and cannot sign agent certificates; give agents certificates from your CA")
	}
	id := auth.FromContext(ctx)
	if id == nil || id.Role != auth.Agent {
		return nil, denied("joining takes an agent token (hodei token create --role agent)")
	}
	worker := req.GetWorkerId()
	if _, bound := s.gate.agents.Load(worker); bound {
		return nil, status.Errorf(codes.AlreadyExists, "worker id %q is already bound to another agent's certificate; an agent with a fresh data dir gets a new id", worker)
	}
	certPEM, serial, err := s.ca.SignAgent(req.GetCsrDer(), worker, s.now())
	if err != nil {
		return nil, toStatus(err)
	}
	b := &job.AgentBinding{WorkerID: worker, Serial: serial, TokenID: id.TokenID, Hostname: req.GetHostname(), JoinedAt: s.now()}
	if err := s.store.BindAgent(ctx, b); err != nil {
		if status.Code(toStatus(err)) == codes.FailedPrecondition {
			return nil, status.Errorf(codes.AlreadyExists, "%s", err)
		}
		return nil, toStatus(err)
	}
	s.gate.agents.Store(worker, b)
	s.log.Info("agent joined", "worker", worker, "hostname", req.GetHostname(), "token", id.TokenID)
	return &pb.JoinResponse{WorkerId: worker, CertificatePem: certPEM, CaPem: s.ca.PEM()}, nil
}

// RevokeWorker cuts an agent off: its binding is revoked, its stream is
// closed, and it is DOWN at once, so its jobs are lost and retry.
func (as *adminService) RevokeWorker(ctx context.Context, req *pb.RevokeWorkerRequest) (*pb.Worker, error) {
	s := as.srv
	if req.GetId() == "" {
		return nil, invalid("id", "is required (see hodei workers ls)")
	}
	id, err := s.resolve(ctx, job.KindWorker, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	b, err := s.store.RevokeAgent(ctx, id, s.now())
	if err != nil {
		return nil, toStatus(err)
	}
	s.gate.agents.Store(b.WorkerID, b)
	s.gate.cut("worker:"+b.WorkerID, fmt.Errorf("%w: worker %s was revoked", errRevoked, b.WorkerID))
	s.sched.Revoke(b.WorkerID)
	s.log.Info("worker revoked", "worker", b.WorkerID)
	for _, w := range s.sched.Workers() {
		if w.Worker.ID == b.WorkerID {
			p := workerPB(w)
			p.Revoked = true
			return p, nil
		}
	}
	return &pb.Worker{Id: b.WorkerID, Hostname: b.Hostname, State: pb.WorkerState_WORKER_STATE_DOWN, Revoked: true}, nil
}
