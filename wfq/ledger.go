package wfq

// Ledger is the fair-queuing account of every tenant, kept between
// scheduling passes. The zero value is ready to use.
type Ledger struct {
	virtual float64
	tags    map[string]float64
}

// Virtual returns the virtual time.
func (l *Ledger) Virtual() float64 { return l.virtual }

// Tag returns the tag tenant has when it competes now: its own tag, or the
// virtual time when that is later (an idle tenant re-enters at the virtual
// time).
func (l *Ledger) Tag(tenant string) float64 {
	return max(l.tags[tenant], l.virtual)
}

// Charge bills tenant for a dispatch of the given cost (slots × expected
// seconds) at weight (<= 0 counts as 1).
func (l *Ledger) Charge(tenant string, cost, weight float64) {
	l.set(tenant, l.Tag(tenant)+cost/weightOr1(weight))
}

// Correct adjusts tenant's tag by delta (actual cost minus the charge) at
// weight once a job ended; delta may be negative.
func (l *Ledger) Correct(tenant string, delta, weight float64) {
	if _, ok := l.tags[tenant]; !ok && delta <= 0 {
		return // never charged here (a job from before a restart): no refund
	}
	l.set(tenant, l.tags[tenant]+delta/weightOr1(weight))
}

// Advance moves the virtual time up to the smallest tag among the
// backlogged tenants (those with work waiting). It never moves back.
func (l *Ledger) Advance(backlogged []string) {
	if len(backlogged) == 0 {
		return
	}
	low := l.Tag(backlogged[0])
	for _, t := range backlogged[1:] {
		low = min(low, l.Tag(t))
	}
	l.virtual = max(l.virtual, low)
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
