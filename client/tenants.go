package client

import (
	"context"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// SetTenant creates the tenant t names or changes it, and returns it with
// its live figures. fields names the fields of t to set, by their proto
// names (weight, max_queued, max_running, burst, burst_for_ms, cooldown_ms,
// preemptible); the others keep their stored values, or their defaults on
// a new tenant. No fields sets them all. codes.InvalidArgument names an
// unknown field or a value out of range.
func (c *Client) SetTenant(ctx context.Context, t *hodeipb.Tenant, fields []string) (*hodeipb.TenantStatus, error) {
	return c.admin.SetTenant(ctx, &hodeipb.SetTenantRequest{Tenant: t, Fields: fields})
}

// GetTenant returns one tenant with its live figures; codes.NotFound if
// there is none with that name.
func (c *Client) GetTenant(ctx context.Context, name string) (*hodeipb.TenantStatus, error) {
	return c.admin.GetTenant(ctx, &hodeipb.GetTenantRequest{Name: name})
}

// ListTenants returns every tenant with its live figures, in name order.
func (c *Client) ListTenants(ctx context.Context) ([]*hodeipb.TenantStatus, error) {
	resp, err := c.admin.ListTenants(ctx, &hodeipb.ListTenantsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetTenants(), nil
}

// DeleteTenant deletes a tenant. codes.NotFound if there is none;
// codes.FailedPrecondition, with a message that says why, for the default
// tenant and while the tenant has jobs that have not finished.
func (c *Client) DeleteTenant(ctx context.Context, name string) error {
	_, err := c.admin.DeleteTenant(ctx, &hodeipb.DeleteTenantRequest{Name: name})
	return err
}
