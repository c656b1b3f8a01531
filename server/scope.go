package server

// Tenant scope in handlers. The interceptors have decided that the caller
// may make the call at all; these helpers narrow what it reaches to the
// tenants of its token. Objects of other tenants are not found (NotFound
// with the same text as a missing one), so ids do not leak.

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
)

// sees reports whether the caller may see objects of tenant. A context
// without an identity is an in-process caller, which sees everything.
func sees(ctx context.Context, tenant string) bool {
	id := auth.FromContext(ctx)
	return id == nil || id.Sees(tenant)
}

// scopeTenant returns the tenant a new object of the caller goes to: the
// one it named, or its only tenant when it named none; a tenant outside
// its scope is refused.
func scopeTenant(ctx context.Context, tenant string) (string, error) {
	id := auth.FromContext(ctx)
	if id == nil || !id.Scoped() {
		return tenant, nil
	}
	if tenant == "" && len(id.Tenants) == 1 {
		return id.Tenants[0], nil
	}
	if tenant == "" {
		tenant = job.DefaultTenant
	}
	if !id.Sees(tenant) {
		return "", denied("tenant %q is outside this token's tenants %v; name one of them (--tenant)", tenant, id.Tenants)
	}
	return tenant, nil
}

// scopeFilter refuses a filter on a tenant outside the caller's tenants,
// as GetUsage and GetTenant do (PermissionDenied): a listing would be
// empty and a watch silent for ever, which reads as "nothing there" when
// the token may not look. A tenant's name is no secret; its objects are.
func scopeFilter(ctx context.Context, tenant string) error {
	if tenant == "" || sees(ctx, tenant) {
		return nil
	}
	return denied("tenant %q is outside this token's tenants %v", tenant, callerTenants(ctx))
}

// notFound is the answer for an object the caller may not see: the same
// as for one that does not exist.
func notFound(kind, id string) error {
	return toStatus(fmt.Errorf("%s %s: %w", kind, id, job.ErrNotFound))
}

// notFoundf is a NotFound status with a message of its own.
func notFoundf(format string, args ...any) error {
	return toStatus(fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), job.ErrNotFound))
}

// owner is whom the jobs the caller submits are accounted to
// (job.Spec.Owner): its token's name; "" for an in-process caller.
func owner(ctx context.Context) string {
	if id := auth.FromContext(ctx); id != nil {
		return id.Name
	}
	return ""
}

// callerTenants returns the tenants the caller is limited to, or nil.
func callerTenants(ctx context.Context) []string {
	if id := auth.FromContext(ctx); id != nil {
		return id.Tenants
	}
	return nil
}

// requireAdmin refuses a caller that is not an admin (for fields of a call
// that only admins may set, such as a tenant's run-as user).
func requireAdmin(ctx context.Context, what string) error {
	if id := auth.FromContext(ctx); id != nil && id.Role != auth.Admin {
		return denied("only an admin may %s; this token's role is %s", what, id.Role)
	}
	return nil
}

// listScoped is store.List limited to the caller's tenants: a filter on a
// tenant outside them lists nothing; a caller limited to one tenant lists
// that one; one limited to several gets a page of each, from its tenant's
// index, merged in the listing's order. What other tenants hold changes
// neither the answer nor its cost (a page per tenant of the caller).
func (s *Server) listScoped(ctx context.Context, f job.Filter) ([]*job.Job, string, error) {
	tenants := callerTenants(ctx)
	switch {
	case len(tenants) == 0:
	case f.Tenant != "":
		if !slices.Contains(tenants, f.Tenant) {
			return nil, "", nil
		}
	case len(tenants) == 1:
		f.Tenant = tenants[0]
	default:
		limit := f.PageSize()
		var out []*job.Job
		more := false
		for _, t := range slices.Compact(slices.Sorted(slices.Values(tenants))) {
			g := f
			g.Tenant, g.Limit = t, limit
			jobs, next, err := s.sched.List(ctx, g)
			if err != nil {
				return nil, "", toStatus(err)
			}
			out, more = append(out, jobs...), more || next != ""
		}
		slices.SortFunc(out, func(a, b *job.Job) int {
			if f.Desc {
				return strings.Compare(b.ID, a.ID)
			}
			return strings.Compare(a.ID, b.ID)
		})
		if len(out) > limit {
			out, more = out[:limit], true
		}
		if !more || len(out) == 0 {
			return out, "", nil
		}
		// Whatever was not taken, of every tenant, comes after the last
		// one taken.
		return out, out[len(out)-1].ID, nil
	}
	jobs, next, err := s.sched.List(ctx, f)
	return jobs, next, toStatus(err)
}

// countScoped is Cluster.Count limited to the caller's tenants, as
// listScoped lists: a tenant outside them counts nothing; a caller limited
// to several tenants gets the sum of their counts.
func (s *Server) countScoped(ctx context.Context, f job.Filter) (int, bool, error) {
	tenants := callerTenants(ctx)
	switch {
	case len(tenants) == 0:
	case f.Tenant != "":
		if !slices.Contains(tenants, f.Tenant) {
			return 0, true, nil
		}
	default:
		total, allExact := 0, true
		for _, t := range tenants {
			f.Tenant = t
			n, exact, err := s.sched.Count(ctx, f)
			if err != nil {
				return 0, false, toStatus(err)
			}
			total, allExact = total+n, allExact && exact
		}
		return total, allExact, nil
	}
	n, exact, err := s.sched.Count(ctx, f)
	if err != nil {
		return 0, false, toStatus(err)
	}
	return n, exact, nil
}
