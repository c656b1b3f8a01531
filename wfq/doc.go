// Package wfq orders work between tenants by weighted fair queuing: each
// tenant carries a virtual-time tag, the tenant with the smallest tag goes
// next, and serving it advances its tag by cost/weight. Over a busy window
// every tenant's share of the served cost therefore tracks its weight.
//
// It is a pure data structure: no I/O, no clock, no goroutines. A Picker is
// not safe for concurrent use; one scheduling pass owns it.
package wfq
