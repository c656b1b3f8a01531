package wfq

import "testing"

func TestLedgerIdleTenantReentersAtVirtualTime(t *testing.T) {
	var l Ledger
	l.Enter("busy")
	l.Charge("busy", 100, 1)
	l.Advance(100) // busy was picked at 100 for its next job
	if got := l.Virtual(); got != 100 {
		t.Fatalf("virtual time = %g, want 100", got)
	}
	l.Enter("idle")
	if got := l.Tag("idle"); got != 100 {
		t.Fatalf("idle tenant's tag = %g, want the virtual time 100: no banked credit", got)
	}
	l.Charge("idle", 10, 2)
	if got := l.Tag("idle"); got != 105 {
		t.Fatalf("tag after a charge of 10 at weight 2 = %g, want 105", got)
	}
	l.Advance(50)
	if got := l.Virtual(); got != 100 {
		t.Fatalf("virtual time moved back to %g", got)
	}
	l.Advance(105)
	l.Enter("busy") // busy went idle at 100 and comes back
	if got := l.Tag("busy"); got != 105 {
		t.Fatalf("busy re-entering = %g, want 105", got)
	}
	l.Enter("idle") // a tenant ahead of the virtual time keeps its tag
	if got := l.Tag("idle"); got != 105 {
		t.Fatalf("entering again moved idle to %g", got)
	}
}

func TestLedgerCorrect(t *testing.T) {
	var l Ledger
	l.Charge("a", 10, 1)
	l.Correct("a", 40, 2) // ran longer than charged
	if got := l.Tag("a"); got != 30 {
		t.Fatalf("tag = %g, want 10 + 40/2", got)
	}
	l.Correct("a", -25, 1)
	if got := l.Tag("a"); got != 5 {
		t.Fatalf("tag = %g, want 5", got)
	}
	l.Correct("never", -5, 1)
	if got := l.Tag("never"); got != 0 {
		t.Fatalf("refund to a tenant never charged = %g, want 0", got)
	}
	l.Forget("a")
	if got := l.Tag("a"); got != 0 {
		t.Fatalf("forgotten tenant's tag = %g, want 0", got)
	}
}
