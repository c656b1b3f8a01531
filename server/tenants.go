package server

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/quota"
)

// tenantFields are the fields SetTenantRequest.fields may name, by their
// proto names and in proto order, each with how it is copied from the
// request's tenant onto the stored one. The name and the timestamps are
// not settable.
var tenantFields = []tenantField{
	{"weight", func(d, s *job.Tenant) { d.Weight = s.Weight }},
	{"max_queued", func(d, s *job.Tenant) { d.MaxQueued = s.MaxQueued }},
	{"max_running", func(d, s *job.Tenant) { d.MaxRunning = s.MaxRunning }},
	// One running limit alone, the others kept: concurrent changes of
	// different limits do not undo each other.
	{"max_running.slots", func(d, s *job.Tenant) { d.MaxRunning.Slots = s.MaxRunning.Slots }},
	{"max_running.cpu_millis", func(d, s *job.Tenant) { d.MaxRunning.CPUMillis = s.MaxRunning.CPUMillis }},
	{"max_running.memory_mib", func(d, s *job.Tenant) { d.MaxRunning.MemoryMiB = s.MaxRunning.MemoryMiB }},
	{"burst", func(d, s *job.Tenant) { d.Burst = s.Burst }},
	{"burst_for_ms", func(d, s *job.Tenant) { d.BurstFor = s.BurstFor }},
	{"cooldown_ms", func(d, s *job.Tenant) { d.Cooldown = s.Cooldown }},
	{"preemptible", func(d, s *job.Tenant) { d.Preemptible = s.Preemptible }},
	// Only admins may set run_as: SetTenant checks it when the fields
	// name it, or name none (every field).
	{"run_as", func(d, s *job.Tenant) { d.RunAs = s.RunAs }},
}

type tenantField struct {
	name string
	copy func(dst, src *job.Tenant)
}

// tenantCopies returns the copy functions of the named fields (none named:
// all of them), or InvalidArgument naming the first unknown one.
func tenantCopies(names []string) ([]func(dst, src *job.Tenant), error) {
	var out []func(dst, src *job.Tenant)
	if len(names) == 0 {
		for _, f := range tenantFields {
			out = append(out, f.copy)
		}
		return out, nil
	}
	for _, n := range names {
		i := slices.IndexFunc(tenantFields, func(f tenantField) bool { return f.name == n })
		if i < 0 {
			known := make([]string, len(tenantFields))
			for k, f := range tenantFields {
				known[k] = f.name
			}
			return nil, invalid("fields", "%q is not a tenant field; use %s", n, strings.Join(known, ", "))
		}
		out = append(out, tenantFields[i].copy)
	}
	return out, nil
}

func (as *adminService) SetTenant(ctx context.Context, req *pb.SetTenantRequest) (*pb.TenantStatus, error) {
	if req.GetTenant() == nil {
		return nil, invalid("tenant", "is required")
	}
	name := req.GetTenant().GetName()
	if err := checkTenantName(name); err != nil {
		return nil, err
	}
	if !sees(ctx, name) {
		return nil, denied("tenant %q is outside this token's tenants %v", name, callerTenants(ctx))
	}
	if len(req.GetFields()) == 0 || slices.Contains(req.GetFields(), "run_as") {
		if err := requireAdmin(ctx, "set a tenant's run_as user"); err != nil {
			return nil, err
		}
	}
	copies, err := tenantCopies(req.GetFields())
	if err != nil {
		return nil, err
	}
	if w := req.GetTenant().GetWeight(); w == 0 && slices.Contains(req.GetFields(), "weight") {
		// Unnamed, a zero weight is the default; named, it is a mistake.
		return nil, invalid("weight", "0 must be more than 0 (1 is the default)")
	}
	src := req.GetTenant().ToTenant()
	_, err = as.srv.sched.SetTenant(ctx, name, func(t *job.Tenant) {
		for _, cp := range copies {
			cp(t, src)
		}
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return as.tenantStatus(name)
}

func (as *adminService) GetTenant(ctx context.Context, req *pb.GetTenantRequest) (*pb.TenantStatus, error) {
	if err := checkTenantName(req.GetName()); err != nil {
		return nil, err
	}
	if !sees(ctx, req.GetName()) {
		return nil, notFound("tenant", fmt.Sprintf("%q", req.GetName()))
	}
	return as.tenantStatus(req.GetName())
}

func (as *adminService) ListTenants(ctx context.Context, _ *pb.ListTenantsRequest) (*pb.ListTenantsResponse, error) {
	sts := as.srv.sched.Tenants()
	resp := &pb.ListTenantsResponse{Tenants: make([]*pb.TenantStatus, 0, len(sts))}
	for _, st := range sts {
		if sees(ctx, st.Tenant.Name) {
			resp.Tenants = append(resp.Tenants, tenantStatusPB(st))
		}
	}
	return resp, nil
}

// DeleteTenant answers FailedPrecondition, with the store's message saying
// why, for the default tenant and for a tenant with unfinished jobs.
func (as *adminService) DeleteTenant(ctx context.Context, req *pb.DeleteTenantRequest) (*pb.DeleteTenantResponse, error) {
	if err := checkTenantName(req.GetName()); err != nil {
		return nil, err
	}
	if !sees(ctx, req.GetName()) {
		return nil, denied("tenant %q is outside this token's tenants %v", req.GetName(), callerTenants(ctx))
	}
	if err := as.srv.sched.DeleteTenant(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteTenantResponse{}, nil
}

func (as *adminService) tenantStatus(name string) (*pb.TenantStatus, error) {
	st, err := as.srv.sched.Tenant(name)
	if err != nil {
		return nil, toStatus(err)
	}
	return tenantStatusPB(st), nil
}

// checkTenantName refuses a name no tenant can have, as InvalidArgument.
func checkTenantName(name string) error {
	if !job.ValidTenant(name) {
		return invalid("name", "%q must be 1–63 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit", name)
	}
	return nil
}

// tenantStatusPB converts a tenant's live figures to the wire.
func tenantStatusPB(st cluster.TenantStatus) *pb.TenantStatus {
	b := st.Burst
	p := &pb.TenantStatus{
		Tenant:      pb.FromTenant(st.Tenant),
		Queued:      int64(st.Queued),
		PendingJobs: int64(st.PendingJobs),
		Pending:     pb.FromResources(st.Pending),
		Running:     pb.FromResources(st.Running),
		Share:       st.Share,
		FairShare:   st.FairShare,
		BurstState:  burstStatePB(b.Phase),
	}
	if b.Phase != quota.Steady && !b.Until.IsZero() {
		p.BurstUntilUnixNano = b.Until.UnixNano()
	}
	return p
}

func burstStatePB(p quota.Phase) pb.BurstState {
	switch p {
	case quota.Bursting:
		return pb.BurstState_BURST_STATE_BURSTING
	case quota.Cooling:
		return pb.BurstState_BURST_STATE_COOLDOWN
	}
	return pb.BurstState_BURST_STATE_NONE
}
