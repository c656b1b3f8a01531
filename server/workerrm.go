package server

import (
	"context"
	"fmt"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// RemoveWorker deletes a worker that is neither connected nor holding
// active jobs, and its agent's binding, so that the certificate the agent
// was issued no longer connects (as it could after the garbage collection
// of DOWN workers, which keeps bindings). A connected worker, or one with
// jobs, is refused with FailedPrecondition: drain it and stop its agent
// first.
func (as *adminService) RemoveWorker(ctx context.Context, req *pb.RemoveWorkerRequest) (*pb.RemoveWorkerResponse, error) {
	s := as.srv
	if req.GetId() == "" {
		return nil, invalid("id", "is required (see hodei workers ls)")
	}
	id, err := s.resolve(ctx, job.KindWorker, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	unbind := func(ctx context.Context) error {
		if err := s.store.DeleteAgent(ctx, id); err != nil {
			return err
		}
		s.gate.agents.Delete(id)
		// A stream that passed authentication before the binding went
		// away is cut, as by a revocation.
		s.gate.cut("worker:"+id, fmt.Errorf("%w: worker %s was removed", errRevoked, id))
		return nil
	}
	if err := s.sched.RemoveWorker(ctx, id, unbind); err != nil {
		return nil, toStatus(err)
	}
	return &pb.RemoveWorkerResponse{}, nil
}
