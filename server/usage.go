package server

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// Usage accounting over the API: GetUsage reads the store's roll-ups (or
// its per-attempt records, a page at a time); the retention sweep deletes
// both past Config.UsageRetention.

// DefaultUsageRetention is how long usage records and roll-ups are kept
// when Config.UsageRetention is zero.
const DefaultUsageRetention = 400 * 24 * time.Hour

// Defaults and bounds of GetUsage.
const (
	defaultUsageWindow   = 30 * 24 * time.Hour // from, when not given: to − this
	defaultUsageAttempts = 100                 // attempts per page, when limit is 0
	maxUsageRows         = 50_000              // groups in one answer (a label with a value per job)
	usageSweepBatch      = 1000                // records and roll-ups deleted per transaction
)

// GetUsage sums ended attempts' usage by group, or lists their records.
// A caller limited to tenants sees only theirs: naming another is refused.
func (as *adminService) GetUsage(ctx context.Context, req *pb.GetUsageRequest) (*pb.GetUsageResponse, error) {
	q, err := usageQuery(ctx, req, as.srv.now())
	if err != nil {
		return nil, err
	}
	resp := &pb.GetUsageResponse{From: q.From.Format(time.DateOnly), To: q.To.Format(time.DateOnly), Total: &pb.UsageRow{}}
	var total job.UsageSums
	if req.GetAttempts() {
		limit := int(req.GetLimit())
		if limit == 0 {
			limit = defaultUsageAttempts
		}
		recs, next, err := as.srv.store.UsageAttempts(ctx, q, req.GetCursor(), limit)
		if err != nil {
			return nil, toStatus(err)
		}
		resp.NextCursor = next
		resp.Attempts = make([]*pb.UsageAttempt, len(recs))
		for i, a := range recs {
			s := a.Sums()
			total.Add(s)
			resp.Attempts[i] = &pb.UsageAttempt{
				JobId: a.JobID, Attempt: int32(a.Attempt), Name: a.Name, Tenant: a.Tenant, User: a.Owner, Labels: a.Labels,
				Worker: a.Worker, Slots: a.Slots, StartedUnixNano: unixNano(a.StartedAt), FinishedUnixNano: unixNano(a.FinishedAt),
				State: pb.JobState(a.State), ExitCode: int32(a.ExitCode),
				WallMicros: s.WallMicros, CpuMicros: s.CPUMicros, SlotMicros: s.SlotMicros, MaxRssKib: s.MaxRSSKiB,
			}
		}
		resp.Total = usageRow("", total)
		return resp, nil
	}
	rows, err := as.srv.store.Usage(ctx, q)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(rows) > maxUsageRows {
		return nil, status.Errorf(codes.ResourceExhausted,
			"the answer has %d groups, more than %d: narrow the days, name a tenant, or group by something with fewer values", len(rows), maxUsageRows)
	}
	resp.Rows = make([]*pb.UsageRow, len(rows))
	for i, r := range rows {
		total.Add(r.UsageSums)
		resp.Rows[i] = usageRow(r.Group, r.UsageSums)
	}
	resp.Total = usageRow("", total)
	return resp, nil
}

// usageQuery checks req and builds its query, limited to the caller's
// tenants; now gives the default days.
func usageQuery(ctx context.Context, req *pb.GetUsageRequest, now time.Time) (job.UsageQuery, error) {
	var q job.UsageQuery
	var err error
	if q.Group, q.GroupKey, err = job.ParseUsageGroup("group_by", req.GetGroupBy()); err != nil {
		return q, toStatus(err)
	}
	if l := req.GetLabel(); l != "" {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return q, invalid("label", "must be KEY=VALUE, not %q", l)
		}
		q.LabelKey, q.LabelValue = k, v
	}
	q.To = job.DayTime(job.UsageDay(now))
	if s := req.GetTo(); s != "" {
		if q.To, err = parseDay("to", s); err != nil {
			return q, err
		}
	}
	q.From = q.To.Add(-defaultUsageWindow)
	if s := req.GetFrom(); s != "" {
		if q.From, err = parseDay("from", s); err != nil {
			return q, err
		}
	}
	scope := callerTenants(ctx)
	if t := req.GetTenant(); t != "" {
		if !job.ValidTenant(t) {
			return q, invalid("tenant", "%q is not a tenant name", t)
		}
		if err := scopeFilter(ctx, t); err != nil {
			return q, err
		}
		q.Tenants = []string{t}
	} else {
		q.Tenants = scope
	}
	if err := q.Validate(); err != nil {
		return q, toStatus(err)
	}
	return q, nil
}

// parseDay reads a UTC day, YYYY-MM-DD, of request field field.
func parseDay(field, s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || t.Unix() < 0 {
		return time.Time{}, invalid(field, "must be a day after 1970 as YYYY-MM-DD (UTC), not %q", s)
	}
	return t, nil
}

func usageRow(group string, s job.UsageSums) *pb.UsageRow {
	return &pb.UsageRow{Group: group, Attempts: s.Attempts, WallMicros: s.WallMicros, CpuMicros: s.CPUMicros,
		SlotMicros: s.SlotMicros, MaxRssKib: s.MaxRSSKiB}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// sweepUsage deletes the usage records and roll-ups older than the usage
// retention, a batch per transaction.
func (s *Server) sweepUsage(ctx context.Context) {
	before := s.now().Add(-s.cfg.UsageRetention)
	for ctx.Err() == nil {
		n, err := s.store.DeleteUsageBefore(ctx, before, usageSweepBatch)
		if err != nil {
			s.log.Log(ctx, job.StoreErrLevel(err), "usage retention", "err", err)
			return
		}
		if n < usageSweepBatch {
			return
		}
	}
}
