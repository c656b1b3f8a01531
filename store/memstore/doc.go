// Package memstore is an in-memory implementation of scheduler.Store for
// tests: the same semantics as the bbolt store (it passes the same
// conformance suite, store/storetest), without a file or a commit loop.
//
// Values are kept encoded as the same records (package record) the bbolt
// store writes, so what a caller gets back has gone through the same
// conversion (times in UTC at nanosecond precision, empty maps and slices as
// nil) and never aliases what the caller passed in or what another caller
// got.
//
// Tenant admission (Insert's MaxQueued check) runs under the store's one
// lock, with a count of each tenant's non-terminal jobs kept beside the jobs,
// as the bbolt store keeps one in its transaction.
//
// Beyond scheduler.Store it has SetWriteError, to make writes fail the way a
// failed commit does.
package memstore
