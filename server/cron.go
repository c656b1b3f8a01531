package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// The cron RPCs of JobService. A schedule belongs to a tenant: a caller
// limited to tenants adds to, sees and changes only theirs, and another
// tenant's schedule is not found, as a missing one is.

func (js *jobService) CronAdd(ctx context.Context, req *pb.CronAddRequest) (*pb.CronSchedule, error) {
	if req.GetSchedule() == nil {
		return nil, invalid("schedule", "is required")
	}
	tenant, err := scopeTenant(ctx, req.GetSchedule().GetTenant())
	if err != nil {
		return nil, err
	}
	sc, err := req.GetSchedule().ToSchedule()
	if err != nil {
		return nil, toStatus(err)
	}
	sc.Tenant = tenant
	sc.Spec.Owner = owner(ctx)
	if sc.Pipeline != nil {
		sc.Pipeline.Defaults.Owner = owner(ctx)
	}
	added, err := js.srv.sched.CronAdd(ctx, sc)
	if errors.Is(err, job.ErrConflict) {
		return nil, status.Error(codes.AlreadyExists, statusMessage(err))
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return pb.FromSchedule(added, ""), nil
}

func (js *jobService) CronList(ctx context.Context, req *pb.CronListRequest) (*pb.CronListResponse, error) {
	tenants := callerTenants(ctx)
	if t := req.GetTenant(); t != "" {
		if err := scopeFilter(ctx, t); err != nil {
			return nil, err
		}
		tenants = []string{t}
	}
	resp := &pb.CronListResponse{}
	for _, sc := range js.srv.sched.Schedules(tenants) {
		resp.Schedules = append(resp.Schedules, pb.FromSchedule(sc, js.srv.sched.CronLastState(ctx, sc)))
	}
	return resp, nil
}

// cronRef returns the tenant and name a CronRef names: its tenant, or the
// caller's only one, or the default one. A tenant the caller may not see
// is NotFound, as a schedule that does not exist.
func cronRef(ctx context.Context, ref *pb.CronRef) (string, string, error) {
	if ref.GetName() == "" {
		return "", "", invalid("name", "is required")
	}
	tenant := ref.GetTenant()
	if tenant == "" {
		var err error
		if tenant, err = scopeTenant(ctx, ""); err != nil {
			return "", "", err
		}
		if tenant == "" {
			tenant = job.DefaultTenant
		}
	}
	if !sees(ctx, tenant) {
		return "", "", notFound("schedule", ref.GetName())
	}
	return tenant, ref.GetName(), nil
}

func (js *jobService) CronGet(ctx context.Context, ref *pb.CronRef) (*pb.CronSchedule, error) {
	tenant, name, err := cronRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	sc, err := js.srv.sched.Schedule(tenant, name)
	if err != nil {
		return nil, toStatus(err)
	}
	return pb.FromSchedule(sc, js.srv.sched.CronLastState(ctx, sc)), nil
}

func (js *jobService) CronPause(ctx context.Context, ref *pb.CronRef) (*pb.CronSchedule, error) {
	tenant, name, err := cronRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	sc, err := js.srv.sched.CronPause(ctx, tenant, name)
	if err != nil {
		return nil, toStatus(err)
	}
	return pb.FromSchedule(sc, js.srv.sched.CronLastState(ctx, sc)), nil
}

func (js *jobService) CronResume(ctx context.Context, ref *pb.CronRef) (*pb.CronSchedule, error) {
	tenant, name, err := cronRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	sc, err := js.srv.sched.CronResume(ctx, tenant, name)
	if err != nil {
		return nil, toStatus(err)
	}
	return pb.FromSchedule(sc, js.srv.sched.CronLastState(ctx, sc)), nil
}

func (js *jobService) CronRemove(ctx context.Context, ref *pb.CronRef) (*pb.CronRemoveResponse, error) {
	tenant, name, err := cronRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := js.srv.sched.CronRemove(ctx, tenant, name); err != nil {
		return nil, toStatus(err)
	}
	return &pb.CronRemoveResponse{}, nil
}

func (js *jobService) CronRun(ctx context.Context, ref *pb.CronRef) (*pb.CronRunResponse, error) {
	tenant, name, err := cronRef(ctx, ref)
	if err != nil {
		return nil, err
	}
	id, err := js.srv.sched.CronRun(ctx, tenant, name)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.CronRunResponse{Id: id}, nil
}
