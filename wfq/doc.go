// Package wfq orders work between tenants by weighted fair queuing on
// virtual time.
//
// Every tenant carries a tag: the virtual time at which the service it has
// received so far would end, were it served alone at its weight. Serving a
// job charges its tenant cost/weight, where the cost is the slots it takes
// times how long it is expected to hold them; when the job ends, the charge
// is corrected by how long it actually ran. The tenant with the smallest tag
// goes next, so over a busy window each tenant's share of slot-time tracks
// its weight, long jobs included.
//
// The virtual time is the tag the last served tenant had when it was
// picked (start-time fair queuing), and it only moves forward. A tenant that
// was idle re-enters at the virtual time: it banks no credit for the time it
// had nothing to run, and it is not behind anyone either, so it does not
// starve. A tenant that keeps work waiting keeps its tag, even while its
// work finds no room, so it is first once room appears.
//
// It is pure data: no I/O, no clock, no goroutines. Neither Ledger nor
// Picker is safe for concurrent use.
package wfq
