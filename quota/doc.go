// Package quota decides admission for tenants: whether a submit fits under a
// tenant's queued limit and whether a dispatch fits under its running
// limits. It is pure: callers pass the limits and the current counts.
package quota
