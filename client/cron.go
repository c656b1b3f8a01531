package client

import (
	"context"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// CronAdd stores a new cron schedule and returns it with its next run. A
// bad expression comes back as codes.InvalidArgument naming "schedule",
// an unknown zone "timezone"; a name its tenant has already,
// codes.AlreadyExists.
func (c *Client) CronAdd(ctx context.Context, s *hodeipb.CronSchedule) (*hodeipb.CronSchedule, error) {
	return c.jobs.CronAdd(ctx, &hodeipb.CronAddRequest{Schedule: s})
}

// CronList returns the schedules of tenant ("": every tenant the caller
// sees), by tenant and name.
func (c *Client) CronList(ctx context.Context, tenant string) ([]*hodeipb.CronSchedule, error) {
	resp, err := c.jobs.CronList(ctx, &hodeipb.CronListRequest{Tenant: tenant})
	if err != nil {
		return nil, err
	}
	return resp.GetSchedules(), nil
}

// CronGet returns one schedule; codes.NotFound when there is none. tenant
// "" is the caller's only tenant, or the default one (so for CronPause,
// CronResume, CronRemove and CronRun).
func (c *Client) CronGet(ctx context.Context, tenant, name string) (*hodeipb.CronSchedule, error) {
	return c.jobs.CronGet(ctx, &hodeipb.CronRef{Tenant: tenant, Name: name})
}

// CronPause stops a schedule's ticks until CronResume.
func (c *Client) CronPause(ctx context.Context, tenant, name string) (*hodeipb.CronSchedule, error) {
	return c.jobs.CronPause(ctx, &hodeipb.CronRef{Tenant: tenant, Name: name})
}

// CronResume starts a paused schedule again from its first tick after now.
func (c *Client) CronResume(ctx context.Context, tenant, name string) (*hodeipb.CronSchedule, error) {
	return c.jobs.CronResume(ctx, &hodeipb.CronRef{Tenant: tenant, Name: name})
}

// CronRemove deletes a schedule, not the jobs it submitted.
func (c *Client) CronRemove(ctx context.Context, tenant, name string) error {
	_, err := c.jobs.CronRemove(ctx, &hodeipb.CronRef{Tenant: tenant, Name: name})
	return err
}

// CronRun submits a schedule's job (or pipeline) now and returns its id.
func (c *Client) CronRun(ctx context.Context, tenant, name string) (string, error) {
	resp, err := c.jobs.CronRun(ctx, &hodeipb.CronRef{Tenant: tenant, Name: name})
	if err != nil {
		return "", err
	}
	return resp.GetId(), nil
}
