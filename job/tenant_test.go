package job

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestTenantValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Tenant)
		field  string // "" when valid
	}{
		{"OK", func(*Tenant) {}, ""},
		{"Burst", func(t *Tenant) { t.MaxRunning.Slots, t.Burst, t.BurstFor, t.Cooldown = 4, 2, time.Minute, time.Minute }, ""},
		{"BurstWithoutCooldown", func(t *Tenant) { t.MaxRunning.Slots, t.Burst, t.BurstFor = 4, 2, time.Minute }, "cooldown"},
		{"Name", func(t *Tenant) { t.Name = "Team A" }, "name"},
		{"WeightNegative", func(t *Tenant) { t.Weight = -1 }, "weight"},
		{"WeightNaN", func(t *Tenant) { t.Weight = math.NaN() }, "weight"},
		{"WeightHuge", func(t *Tenant) { t.Weight = MaxWeight + 1 }, "weight"},
		{"MaxQueued", func(t *Tenant) { t.MaxQueued = -1 }, "max_queued"},
		{"MaxRunning", func(t *Tenant) { t.MaxRunning.Slots = -1 }, "max_running"},
		{"CPU", func(t *Tenant) { t.MaxRunning.CPUMillis = -1 }, "cpu"},
		{"Memory", func(t *Tenant) { t.MaxRunning.MemoryMiB = -1 }, "memory"},
		{"BurstBelowOne", func(t *Tenant) { t.Burst = 0.5 }, "burst"},
		{"BurstWithoutLimit", func(t *Tenant) { t.Burst, t.BurstFor, t.Cooldown = 2, time.Minute, time.Minute }, "burst"},
		{"BurstWithoutDuration", func(t *Tenant) { t.MaxRunning.Slots, t.Burst = 4, 2 }, "burst_for"},
		{"Cooldown", func(t *Tenant) { t.Cooldown = -time.Second }, "cooldown"},
		{"RunAsName", func(t *Tenant) { t.RunAs = "nobody" }, ""},
		{"RunAsUID", func(t *Tenant) { t.RunAs = "65534" }, ""},
		{"RunAsRoot", func(t *Tenant) { t.RunAs = "root" }, ""},
		{"RunAsDomainUser", func(t *Tenant) { t.RunAs = "svc.build@corp" }, ""},
		{"RunAsMachineAccount", func(t *Tenant) { t.RunAs = "host01$" }, ""},
		{"RunAsLongest", func(t *Tenant) { t.RunAs = strings.Repeat("a", MaxRunAs) }, ""},
		{"RunAsTooLong", func(t *Tenant) { t.RunAs = strings.Repeat("a", MaxRunAs+1) }, "run_as"},
		{"RunAsControlChar", func(t *Tenant) { t.RunAs = "bob\n" }, "run_as"},
		{"RunAsSpace", func(t *Tenant) { t.RunAs = "bob smith" }, "run_as"},
		{"RunAsSlash", func(t *Tenant) { t.RunAs = "../root" }, "run_as"},
		{"RunAsDash", func(t *Tenant) { t.RunAs = "-u0" }, "run_as"},
		{"RunAsDot", func(t *Tenant) { t.RunAs = ".." }, "run_as"},
		{"RunAsColon", func(t *Tenant) { t.RunAs = "bob:0" }, "run_as"},
		{"RunAsOnlyDollar", func(t *Tenant) { t.RunAs = "$" }, "run_as"},
		{"RunAsNonASCII", func(t *Tenant) { t.RunAs = "jos\u00e9" }, "run_as"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := Tenant{Name: "team-a"}
			tn.Normalize()
			tc.change(&tn)
			err := tn.Validate()
			var fe *FieldError
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field):
				t.Fatalf("Validate = %v, want a FieldError on %s", err, tc.field)
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	tenants := map[string]*Tenant{"a": {Name: "a", MaxQueued: 3}, "b": {Name: "b"}}
	queued := map[string]int{"a": 2}
	lookup := func(name string) (*Tenant, int, error) { return tenants[name], queued[name], nil }
	jobs := func(names ...string) []*Job {
		var out []*Job
		for _, n := range names {
			out = append(out, &Job{Spec: Spec{Tenant: n}})
		}
		return out
	}
	if n, err := Admit(jobs("a", "b", "b"), lookup); err != nil || n["a"] != 1 || n["b"] != 2 {
		t.Fatalf("Admit = %v, %v; want a:1 b:2", n, err)
	}
	if _, err := Admit(jobs("a", "a"), lookup); !errors.Is(err, ErrExhausted) ||
		!strings.Contains(err.Error(), "max-queued limit of 3 (2 jobs queued, 2 more asked for)") {
		t.Fatalf("Admit over the limit = %v, want OverQueued", err)
	}
	if _, err := Admit(jobs("b", "ghost"), lookup); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "hodei tenants set ghost") {
		t.Fatalf("Admit to an unknown tenant = %v, want UnknownTenant", err)
	}
}

// TestOverQueuedCountsInWords checks that the refusal reads right for one
// job queued as for several.
func TestOverQueuedCountsInWords(t *testing.T) {
	for _, c := range []struct {
		queued int
		want   string
	}{
		{0, "(0 jobs queued, 1 more asked for)"},
		{1, "(1 job queued, 1 more asked for)"},
		{2, "(2 jobs queued, 1 more asked for)"},
	} {
		if err := OverQueued("t", 1, c.queued, 1); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OverQueued(%d queued) = %v, want %q", c.queued, err, c.want)
		}
	}
}
