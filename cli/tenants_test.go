package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// testTenants are tenants in each burst state, with and without work.
func testTenants() []*hodeipb.TenantStatus {
	created := testNow.Add(-50 * time.Hour).UnixNano()
	return []*hodeipb.TenantStatus{
		{
			Tenant:     &hodeipb.Tenant{Name: "default", Weight: 1, CreatedUnixNano: created, UpdatedUnixNano: created},
			BurstState: hodeipb.BurstState_BURST_STATE_NONE,
		},
		{
			Tenant: &hodeipb.Tenant{
				Name: "ml", Weight: 3, MaxQueued: 500, MaxRunning: &hodeipb.Resources{Slots: 8},
				Burst: 2, BurstForMs: 600_000, CooldownMs: 1_800_000, Preemptible: true, RunAs: "ml-jobs",
				CreatedUnixNano: created, UpdatedUnixNano: testNow.Add(-time.Hour).UnixNano(),
			},
			Queued: 40, PendingJobs: 30, Pending: &hodeipb.Resources{Slots: 30, CpuMillis: 30_000, MemoryMib: 61_440},
			Running: &hodeipb.Resources{Slots: 10, CpuMillis: 10_000, MemoryMib: 20_480}, Share: 0.625, FairShare: 0.75,
			BurstState: hodeipb.BurstState_BURST_STATE_BURSTING, BurstUntilUnixNano: testNow.Add(5 * time.Minute).UnixNano(),
		},
		{
			Tenant: &hodeipb.Tenant{
				Name: "ci", Weight: 1, MaxRunning: &hodeipb.Resources{CpuMillis: 8000, MemoryMib: 16_384},
				Burst: 1.5, BurstForMs: 60_000, CooldownMs: 12 * 3_600_000,
				CreatedUnixNano: created, UpdatedUnixNano: created,
			},
			Queued: 6, PendingJobs: 0, Running: &hodeipb.Resources{Slots: 6, CpuMillis: 6000, MemoryMib: 6144},
			Share: 0.375, FairShare: 0.25,
			BurstState: hodeipb.BurstState_BURST_STATE_COOLDOWN, BurstUntilUnixNano: testNow.Add(10 * time.Hour).UnixNano(),
		},
	}
}

func TestTenantsSet(t *testing.T) {
	stored := &hodeipb.TenantStatus{Tenant: &hodeipb.Tenant{Name: "ml", Weight: 2, MaxRunning: &hodeipb.Resources{Slots: 8, CpuMillis: 4000, MemoryMib: 1024}}}
	for _, tc := range []struct {
		name   string
		stored *hodeipb.TenantStatus // nil: the tenant does not exist
		args   []string
		want   *hodeipb.SetTenantRequest // nil: no set is sent
	}{
		{
			name: "OnlyGivenFields",
			args: []string{"--weight", "3", "--max-queued", "50"},
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml", Weight: 3, MaxQueued: 50}, Fields: []string{"weight", "max_queued"}},
		},
		{
			name: "Durations",
			args: []string{"--burst", "2", "--burst-for", "10m", "--cooldown", "1h30m"},
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml", Burst: 2, BurstForMs: 600_000, CooldownMs: 5_400_000},
				Fields: []string{"burst", "burst_for_ms", "cooldown_ms"}},
		},
		{
			name: "Preemptible",
			args: []string{"--preemptible"},
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml", Preemptible: true}, Fields: []string{"preemptible"}},
		},
		{
			name:   "PreemptibleFalse",
			stored: stored,
			args:   []string{"--preemptible=false"},
			want:   &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml"}, Fields: []string{"preemptible"}},
		},
		{
			// Each running limit is its own field: the server keeps the
			// stored cpu, and the CLI need not read it first.
			name:   "RunningLimitsApart",
			stored: stored,
			args:   []string{"--memory", "2048", "--max-running", "0"},
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml", MaxRunning: &hodeipb.Resources{MemoryMib: 2048}},
				Fields: []string{"max_running.slots", "max_running.memory_mib"}},
		},
		{
			name: "RunningLimitNewTenant",
			args: []string{"--max-running", "4", "--cpu", "2000"},
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml", MaxRunning: &hodeipb.Resources{Slots: 4, CpuMillis: 2000}},
				Fields: []string{"max_running.slots", "max_running.cpu_millis"}},
		},
		{
			name: "RunAs",
			args: []string{"--run-as", "nobody"},
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml", RunAs: "nobody"}, Fields: []string{"run_as"}},
		},
		{
			// An empty user is sent, and named, to clear the setting.
			name:   "RunAsCleared",
			stored: stored,
			args:   []string{"--run-as", ""},
			want:   &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml"}, Fields: []string{"run_as"}},
		},
		{
			name: "NoFlagsCreates",
			want: &hodeipb.SetTenantRequest{Tenant: &hodeipb.Tenant{Name: "ml"}},
		},
		{
			name:   "NoFlagsLeavesExisting",
			stored: stored,
		},
	} {
		orders := map[string][]string{ // `set NAME --flags` as the docs write it, and flags first
			"NameFirst":  append([]string{"tenants", "set", "ml"}, tc.args...),
			"FlagsFirst": append(append([]string{"tenants", "set"}, tc.args...), "ml"),
		}
		for order, argv := range orders {
			t.Run(tc.name+"/"+order, func(t *testing.T) {
				h := newHarness(t)
				if tc.stored != nil {
					h.admin.tenants = []*hodeipb.TenantStatus{tc.stored}
				}
				r := h.run(t, argv...)
				r.wantOK(t)
				if !strings.HasPrefix(r.stdout, "NAME ") || !strings.Contains(r.stdout, "\nml ") {
					t.Errorf("stdout = %q, want a one-row table of ml", r.stdout)
				}
				sets := h.admin.sets()
				switch {
				case tc.want == nil && len(sets) != 0:
					t.Errorf("sent %v, want no set", sets)
				case tc.want != nil && (len(sets) != 1 || !proto.Equal(sets[0], tc.want)):
					t.Errorf("sent %v\nwant: %s", sets, prototext.Format(tc.want))
				}
			})
		}
	}
}

func TestTenantsSetJSON(t *testing.T) {
	h := newHarness(t)
	r := h.run(t, "tenants", "set", "-o", "json", "--weight", "2.5", "ml")
	r.wantOK(t)
	var got tenantView
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Name != "ml" || got.Weight != 2.5 || got.BurstState != "none" {
		t.Errorf("json = %s (%v), want ml with weight 2.5", r.stdout, err)
	}
}

func TestTenantsSetUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"BurstForBad", []string{"--burst-for", "soon", "ml"}, `--burst-for: "soon" is not a duration`},
		{"BurstForNoUnit", []string{"--burst-for", "10", "ml"}, `--burst-for: "10" is not a duration`},
		{"CooldownNegative", []string{"--cooldown", "-1m", "ml"}, "--cooldown: -1m must not be negative"},
		{"WeightNotNumber", []string{"--weight", "heavy", "ml"}, `--weight: invalid value "heavy"`},
		{"MaxQueuedNotInt", []string{"--max-queued", "1.5", "ml"}, "--max-queued: invalid value"},
		{"CPUNotInt", []string{"--cpu", "2c", "ml"}, "--cpu: invalid value"},
		{"PreemptibleBad", []string{"--preemptible=maybe", "ml"}, "--preemptible"},
		{"MissingName", nil, "missing tenant NAME"},
		{"FlagAfterNameNeedsValue", []string{"ml", "--weight"}, "flag needs an argument: --weight"},
		{"FlagAfterNameBadValue", []string{"ml", "--weight", "x"}, `invalid value "x" for flag --weight`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(t, append([]string{"tenants", "set"}, tc.args...)...)
			if r.code != 2 || !strings.HasPrefix(r.stderr, "hodei: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
			if n := len(h.admin.sets()); n != 0 {
				t.Errorf("server got %d sets, want none", n)
			}
		})
	}
}

func TestTenantsLs(t *testing.T) {
	h := newHarness(t)
	h.admin.tenants = testTenants()
	t.Run("Table", func(t *testing.T) {
		r := h.run(t, "tenants", "ls")
		r.wantOK(t)
		checkGolden(t, "tenants-ls", r.stdout)
	})
	t.Run("JSON", func(t *testing.T) {
		r := h.run(t, "tenants", "ls", "-o", "json")
		r.wantOK(t)
		var got []map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatalf("%v\n%s", err, r.stdout)
		}
		if len(got) != 3 {
			t.Fatalf("got %d tenants, want 3", len(got))
		}
		for _, k := range []string{"name", "weight", "max_queued", "max_running", "burst", "burst_for_ms", "cooldown_ms",
			"preemptible", "run_as", "queued", "pending_jobs", "pending", "running", "share", "fair_share", "burst_state"} {
			if _, ok := got[0][k]; !ok {
				t.Errorf("no key %q: %v", k, got[0])
			}
		}
		ml := got[1]
		if ml["burst_state"] != "bursting" || ml["run_as"] != "ml-jobs" || ml["burst_until"] != "2026-03-14T15:14:26Z" || ml["share"] != 0.625 {
			t.Errorf("ml = %v", ml)
		}
		if _, ok := got[0]["burst_until"]; ok {
			t.Errorf("default has a burst_until: %v", got[0])
		}
	})
}

func TestTenantsGet(t *testing.T) {
	h := newHarness(t)
	h.admin.tenants = testTenants()
	t.Run("Detail", func(t *testing.T) {
		r := h.run(t, "tenants", "get", "ml")
		r.wantOK(t)
		checkGolden(t, "tenants-get", r.stdout)
	})
	t.Run("JSON", func(t *testing.T) {
		r := h.run(t, "tenants", "get", "-o", "json", "ci")
		r.wantOK(t)
		var got tenantView
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatal(err)
		}
		if got.Name != "ci" || got.MaxRunning.CPUMillis != 8000 || got.BurstState != "cooldown" || got.Running.Slots != 6 {
			t.Errorf("ci = %+v", got)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		r := h.run(t, "tenants", "get", "ghost")
		if r.code != 1 || r.stderr != "hodei: tenant \"ghost\" not found\n" {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestTenantsRm(t *testing.T) {
	h := newHarness(t)
	h.admin.tenants = testTenants()
	h.admin.tenants[2].Queued = 0
	t.Run("OK", func(t *testing.T) {
		r := h.run(t, "tenants", "rm", "ci")
		r.wantOK(t)
		if r.stdout != "tenant ci deleted\n" {
			t.Errorf("stdout = %q", r.stdout)
		}
	})
	for _, tc := range []struct {
		name, tenant string
		code         int
		stderr       string
	}{
		{"Default", "default", 1, "hodei: tenant \"default\": the default tenant cannot be deleted\n"},
		{"UnfinishedJobs", "ml", 1, "hodei: tenant \"ml\" has 40 jobs that are not finished; cancel them or wait\n"},
		{"NotFound", "ci", 1, "hodei: tenant \"ci\" not found\n"},
		{"EmptyName", "", 2, "hodei: tenant NAME must not be empty\nRun 'hodei tenants rm --help' for usage.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(t, "tenants", "rm", tc.tenant)
			if r.code != tc.code || r.stderr != tc.stderr {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}
	h.admin.mu.Lock()
	defer h.admin.mu.Unlock()
	if strings.Join(h.admin.tenantDels, ",") != "ci" {
		t.Errorf("deleted %v, want [ci]", h.admin.tenantDels)
	}
}
