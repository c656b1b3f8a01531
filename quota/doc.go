// Package quota decides whether a dispatch fits under a tenant's running
// limits, burst included. (The queued limit is checked by the store, in the
// transaction of an insert, with job.Admit.)
//
// A burst lets a tenant run up to Burst × its running limit. It starts with
// the first dispatch that takes the tenant over its limit and lasts BurstFor
// whatever happens meanwhile; then the tenant is held at its limit for
// Cooldown (the caller stops what runs over the limit when a burst ends).
//
// It is pure: callers pass the limits, the burst state, the current counts
// and the time.
package quota
