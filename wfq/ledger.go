package wfq

// Ledger is the fair-queuing account of every tenant, kept between
// scheduling passes. The zero value is ready to use.
type Ledger struct {
	virtual float64
	tags    map[string]float64
}

// Virtual returns the virtual time.
func (l *Ledger) Virtual() float64 { return l.virtual }

// Tag returns tenant's tag: lower goes first.
func (l *Ledger) Tag(tenant string) float64 { return l.tags[tenant] }

// Enter lifts the tag of a tenant that had no work waiting and now has to
// the virtual time: it banks no credit for the time it was idle. A tenant
// that keeps work waiting (even work that finds no room) keeps its tag.
func (l *Ledger) Enter(tenant string) {
	l.set(tenant, max(l.tags[tenant], l.virtual))
}

// Charge bills tenant for a dispatch of the given cost (slots × expected
// seconds) at weight (<= 0 counts as 1).
func (l *Ledger) Charge(tenant string, cost, weight float64) {
	l.set(tenant, l.tags[tenant]+cost/weightOr1(weight))
}

// Correct adjusts tenant's tag by delta (actual cost minus the charge) at
// weight once a job ran past its charge or ended; delta may be negative.
func (l *Ledger) Correct(tenant string, delta, weight float64) {
	if _, ok := l.tags[tenant]; !ok && delta <= 0 {
		return // never charged here (a job from before a restart): no refund
	}
	l.set(tenant, l.tags[tenant]+delta/weightOr1(weight))
}

// Advance moves the virtual time up to start, the tag a tenant had when it
// was last served (start-time fair queuing). Tenants that wait but cannot
// be served (no worker fits, at their limit) therefore do not hold it back.
// It never moves back.
func (l *Ledger) Advance(start float64) {
	l.virtual = max(l.virtual, start)
}

// Forget drops a deleted tenant's account.
func (l *Ledger) Forget(tenant string) { delete(l.tags, tenant) }

func (l *Ledger) set(tenant string, tag float64) {
	if l.tags == nil {
		l.tags = make(map[string]float64)
	}
	l.tags[tenant] = tag
}

func weightOr1(w float64) float64 {
	if w <= 0 {
		return 1
	}
	return w
}
