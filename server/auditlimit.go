package server

// Limits on what one caller can make the audit log hold: a bound on each
// record's text, and a per-peer budget for denial records, so that a flood
// of refused calls (with no credentials at all) can neither fill the disk
// nor bury other callers' records. What the budget holds back is counted
// and said in the next record of that peer.

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hodei-jobs/hodei/job"
)

// Bounds of the audit log's intake.
const (
	maxAuditText  = 256 // bytes of each text of a record
	maxAuditScope = 32  // tenants of a token's scope kept in a record
	// allPeers is the budget of all peers together, so that many source
	// addresses cannot multiply the per-peer one.
	allPeers = "*"
	// allRate and allBurst are that budget: per second, and at once.
	allRate  = 100
	allBurst = 1000
	// denialRate and denialBurst are one peer's budget of denial records:
	// per second, and at once.
	denialRate  = 20
	denialBurst = 100
	// maxDenialPeers bounds the budgets kept; past it they start over.
	maxDenialPeers = 10000
	// auditWait is the longest a call waits for room in a full audit
	// queue (the store failing, a full disk); past it the record is
	// logged at error level and counted as lost, and the call goes on.
	auditWait = 5 * time.Second
	// auditLinger is how long records gather before the writer stores
	// them: they become visible to audit ls that much later.
	auditLinger = 10 * time.Millisecond
)

// clip shortens s to at most n bytes, on a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// clipEntry bounds every text of a record, whatever the request held.
func clipEntry(e *job.AuditEntry) {
	for _, f := range []*string{&e.TokenID, &e.TokenName, &e.Role, &e.Tenant, &e.Action, &e.Target, &e.Result, &e.Message, &e.Peer} {
		*f = clip(*f, maxAuditText)
	}
	// A copy: the scope is the token's own slice, which other calls'
	// records (being written meanwhile) share.
	e.Scope = slices.Clone(e.Scope[:min(len(e.Scope), maxAuditScope)])
	for i := range e.Scope {
		e.Scope[i] = clip(e.Scope[i], maxAuditText)
	}
}

// denialBudget is the token bucket of each peer's denial records. It is
// safe for concurrent use.
type denialBudget struct {
	mu          sync.Mutex
	peers       map[string]*bucket // by peer host; guarded by mu
	rate, burst float64            // 0: denialRate, denialBurst; guarded by mu
}

// set changes the budget of every peer (tests).
func (d *denialBudget) set(rate, burst float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rate, d.burst, d.peers = rate, burst, nil
}

type bucket struct {
	tokens     float64
	at         time.Time
	suppressed int // denials not recorded since the last record
}

// allow reports whether a denial from peer may be recorded at now, and how
// many were held back before it.
func (d *denialBudget) allow(peer string, now time.Time) (ok bool, suppressed int) {
	host, _, err := net.SplitHostPort(peer)
	if err != nil {
		host = peer
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	rate, burst := d.rate, d.burst
	if rate == 0 {
		rate, burst = denialRate, denialBurst
	}
	if d.peers == nil {
		d.peers = make(map[string]*bucket)
	}
	all := d.bucket(allPeers, now, max(allBurst, burst), max(allRate, rate))
	b := d.peers[host]
	if b == nil && len(d.peers) >= maxDenialPeers {
		b = all // too many peers to tell apart: they share the global budget
	} else {
		b = d.bucket(host, now, burst, rate)
	}
	if b.tokens < 1 || all.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	if b != all {
		all.tokens--
	}
	suppressed, b.suppressed = b.suppressed, 0
	return true, suppressed
}

// bucket returns key's bucket, refilled to now.
func (d *denialBudget) bucket(key string, now time.Time, burst, rate float64) *bucket {
	b := d.peers[key]
	if b == nil {
		b = &bucket{tokens: burst, at: now}
		d.peers[key] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
	b.at = now
	return b
}

// noteSuppressed adds to a record how many denials of its peer were held
// back before it.
func noteSuppressed(e *job.AuditEntry, n int) {
	if n > 0 {
		e.Message = clip(fmt.Sprintf("(%d more denials from this peer not recorded) %s", n, e.Message), maxAuditText)
	}
}
