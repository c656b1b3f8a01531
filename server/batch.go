package server

import (
	"cmp"
	"context"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// A batch whose encoded specs are within job.MaxBatchBytes (as the CLI
// keeps them) fits one request: each spec adds at most 5 bytes of framing
// (a tag and a length) to its encoding. This fails to compile when the two
// limits drift apart.
const _ = uint(maxRecvMsg - job.MaxBatchBytes - 5*job.MaxBatch)

func (js *jobService) SubmitBatch(ctx context.Context, req *pb.SubmitBatchRequest) (*pb.SubmitBatchResponse, error) {
	if err := job.CheckBatchLen(len(req.GetSpecs())); err != nil {
		return nil, toStatus(err)
	}
	specs := make([]job.Spec, len(req.GetSpecs()))
	var (
		deps    []string // the dependencies of the specs before a refused one, read in one go below
		refused error    // the first spec refused for its tenant, which ends the checks
	)
	for i, ps := range req.GetSpecs() {
		if ps == nil {
			refused = invalid(job.BatchField(i, ""), "is required")
			break
		}
		tenant, err := scopeTenant(ctx, ps.GetTenant())
		if err != nil {
			refused = batchStatus(i, err)
			break
		}
		deps = append(deps, ps.GetDependsOn()...)
		ps.Tenant = tenant // as Submit does, so that the audit record names it
		specs[i] = ps.ToSpec()
		specs[i].Owner = owner(ctx)
		if req.GetRequireFit() {
			if err := js.srv.sched.FitError(specs[i]); err != nil {
				refused = noFit(job.InBatch(i, err))
				break
			}
		}
	}
	if len(deps) > 0 {
		// As in Submit: a job the caller may not see is no dependency; a
		// spec before the refused one is named first, as it comes first.
		found, err := js.srv.sched.GetMany(ctx, deps)
		if err != nil {
			return nil, toStatus(err)
		}
		k := 0
		for i, ps := range req.GetSpecs() {
			if k == len(deps) {
				break
			}
			for _, dep := range ps.GetDependsOn() {
				if d := found[k]; d != nil && !sees(ctx, d.Spec.Tenant) {
					return nil, toStatus(job.InBatch(i, job.UnknownDependency(dep)))
				}
				k++
			}
		}
	}
	if refused != nil {
		return nil, refused
	}
	jobs, err := js.srv.sched.SubmitBatch(ctx, specs)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.SubmitBatchResponse{Ids: make([]string, len(jobs))}
	for i, j := range jobs {
		resp.Ids[i] = j.ID
	}
	return resp, nil
}

// batchAudit names what a batch submit acted on for the audit record:
// its first and last job and their number, and its tenant, or "several".
func batchAudit(req *pb.SubmitBatchRequest, resp *pb.SubmitBatchResponse) (target, tenant string) {
	for i, ps := range req.GetSpecs() {
		t := cmp.Or(ps.GetTenant(), job.DefaultTenant)
		if i > 0 && t != tenant {
			tenant = "several"
			break
		}
		tenant = t
	}
	switch ids := resp.GetIds(); len(ids) {
	case 0:
	case 1:
		target = ids[0]
	default:
		target = fmt.Sprintf("%s … %s (%d jobs)", ids[0], ids[len(ids)-1], len(ids))
	}
	return target, tenant
}

// batchStatus is err, a status error or a domain error, as the error of
// spec i of a batch: its message starts with "specs[i]" and it names that
// spec in its details, as toStatus does for a domain error.
func batchStatus(i int, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return toStatus(job.InBatch(i, err))
	}
	return withField(status.New(st.Code(), job.BatchField(i, "")+": "+st.Message()), job.BatchField(i, ""), st.Message())
}
