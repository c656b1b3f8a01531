package server

import (
	"context"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// setTenant sets every field of tn and returns the answer.
func (s *sut) setTenant(t *testing.T, tn *pb.Tenant, fields ...string) *pb.TenantStatus {
	t.Helper()
	st, err := s.admin.SetTenant(context.Background(), &pb.SetTenantRequest{Tenant: tn, Fields: fields})
	if err != nil {
		t.Fatalf("set tenant %s: %v", tn.GetName(), err)
	}
	return st
}

// wantStatus fails unless err is a status with code whose message
// contains every one of want.
func wantStatus(t *testing.T, err error, code codes.Code, want ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
	for _, w := range want {
		if !strings.Contains(st.Message(), w) {
			t.Errorf("message %q lacks %q", st.Message(), w)
		}
	}
}

func TestTenantsRoundTrip(t *testing.T) {
	s := setup(t)
	ctx := context.Background()

	st := s.setTenant(t, &pb.Tenant{
		Name: "team-a", Weight: 3, MaxQueued: 10,
		MaxRunning: &pb.Resources{Slots: 4}, Burst: 2, BurstForMs: 60_000, CooldownMs: 120_000, Preemptible: true,
	})
	want := &pb.Tenant{Name: "team-a", Weight: 3, MaxQueued: 10,
		MaxRunning: &pb.Resources{Slots: 4}, Burst: 2, BurstForMs: 60_000, CooldownMs: 120_000, Preemptible: true}
	got := proto.CloneOf(st.GetTenant())
	if got.GetCreatedUnixNano() == 0 || got.GetUpdatedUnixNano() == 0 {
		t.Errorf("timestamps unset: %v", got)
	}
	got.CreatedUnixNano, got.UpdatedUnixNano = 0, 0
	if !proto.Equal(got, want) {
		t.Fatalf("SetTenant answered %v, want %v", got, want)
	}
	if st.GetBurstState() != pb.BurstState_BURST_STATE_NONE {
		t.Errorf("burst state %s, want NONE", st.GetBurstState())
	}

	// Only the named field changes; the others keep their stored values.
	st = s.setTenant(t, &pb.Tenant{Name: "team-a", Weight: 5, MaxQueued: 99}, "weight")
	if st.GetTenant().GetWeight() != 5 || st.GetTenant().GetMaxQueued() != 10 || st.GetTenant().GetMaxRunning().GetSlots() != 4 {
		t.Errorf("after setting weight only: %v", st.GetTenant())
	}

	s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "team-a", Resources: &pb.Resources{Slots: 2}})
	st, err := s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "team-a"})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetQueued() != 1 || st.GetPendingJobs() != 1 || st.GetPending().GetSlots() != 2 || st.GetFairShare() != 1 {
		t.Errorf("GetTenant with one pending job = %v", st)
	}

	list, err := s.admin.ListTenants(ctx, &pb.ListTenantsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ts := range list.GetTenants() {
		names = append(names, ts.GetTenant().GetName())
	}
	if strings.Join(names, ",") != "default,team-a" {
		t.Errorf("ListTenants = %v, want default, team-a", names)
	}

	m := s.httpGet(t, "/metrics")
	for _, w := range []string{
		`hodei_tenant_weight{tenant="team-a"} 5`,
		`hodei_tenant_pending_slots{tenant="team-a"} 2`,
		`hodei_tenant_running_slots{tenant="team-a"} 0`,
		`hodei_tenant_fair_share{tenant="team-a"} 1`,
		`hodei_tenant_share{tenant="default"} 0`,
	} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}

	s.setTenant(t, &pb.Tenant{Name: "team-b"})
	if _, err := s.admin.DeleteTenant(ctx, &pb.DeleteTenantRequest{Name: "team-b"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "team-b"})
	wantStatus(t, err, codes.NotFound, "team-b")
}

func TestSetTenantErrors(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		req  *pb.SetTenantRequest
		want string // the message starts with it
	}{
		{"UnknownField", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "a"}, Fields: []string{"weight", "colour"}}, `fields: "colour" is not a tenant field`},
		{"NoTenant", &pb.SetTenantRequest{}, "tenant: is required"},
		{"BadName", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "Team A"}}, `name: "Team A"`},
		{"NegativeWeight", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "a", Weight: -1}}, "weight:"},
		{"NamedZeroWeight", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "a"}, Fields: []string{"weight"}}, "weight: 0 must be more than 0"},
		{"BurstWithoutLimit", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "a", Burst: 2, BurstForMs: 1000}}, "burst:"},
		{"NamedFieldIsChecked", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "a", MaxQueued: -1}, Fields: []string{"max_queued"}}, "max_queued:"},
		{"RunAs", &pb.SetTenantRequest{Tenant: &pb.Tenant{Name: "a", RunAs: "bob\n"}, Fields: []string{"run_as"}}, `run_as: "bob\n" must be a user name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.admin.SetTenant(ctx, tc.req)
			wantStatus(t, err, codes.InvalidArgument)
			if msg := status.Convert(err).Message(); !strings.HasPrefix(msg, tc.want) {
				t.Errorf("message %q does not start with %q", msg, tc.want)
			}
		})
	}
	if _, err := s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "a"}); status.Code(err) != codes.NotFound {
		t.Errorf("a refused set stored the tenant: %v", err)
	}
	// A bad value in a field that is not named is not copied, so not checked.
	st := s.setTenant(t, &pb.Tenant{Name: "a", Weight: 2, MaxQueued: -1}, "weight")
	if st.GetTenant().GetMaxQueued() != 0 {
		t.Errorf("an unnamed field was set: %v", st.GetTenant())
	}
}

func TestDeleteTenantErrors(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	s.setTenant(t, &pb.Tenant{Name: "busy"})
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "busy"})

	del := func(name string) error {
		_, err := s.admin.DeleteTenant(ctx, &pb.DeleteTenantRequest{Name: name})
		return err
	}
	t.Run("Default", func(t *testing.T) {
		wantStatus(t, del("default"), codes.FailedPrecondition, "default tenant cannot be deleted")
	})
	t.Run("UnfinishedJobs", func(t *testing.T) {
		wantStatus(t, del("busy"), codes.FailedPrecondition, `tenant "busy" has 1 job that is not finished`)
	})
	t.Run("Unknown", func(t *testing.T) {
		wantStatus(t, del("ghost"), codes.NotFound, "ghost")
	})
	t.Run("BadName", func(t *testing.T) {
		wantStatus(t, del(""), codes.InvalidArgument, "name:")
	})
	t.Run("AfterTheJobsEnd", func(t *testing.T) {
		if _, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
		if err := del("busy"); err != nil {
			t.Fatalf("delete after the only job ended: %v", err)
		}
	})
}

func TestSubmitToUnknownTenant(t *testing.T) {
	t.Run("Refused", func(t *testing.T) {
		s := setup(t)
		_, err := s.jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}, Tenant: "ghost"}})
		wantStatus(t, err, codes.NotFound, `tenant "ghost" does not exist`, "hodei tenants set ghost")
	})
	t.Run("AutoTenants", func(t *testing.T) {
		s := setup(t, func(c *Config) { c.AutoTenants = true })
		s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "ghost"})
		st, err := s.admin.GetTenant(context.Background(), &pb.GetTenantRequest{Name: "ghost"})
		if err != nil {
			t.Fatal(err)
		}
		if st.GetTenant().GetWeight() != 1 || st.GetQueued() != 1 {
			t.Errorf("auto-created tenant = %v, want weight 1 with one job", st)
		}
	})
}

func TestMaxQueued(t *testing.T) {
	s := setup(t)
	s.setTenant(t, &pb.Tenant{Name: "small", MaxQueued: 1}, "max_queued")
	s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "small"})
	_, err := s.jobs.Submit(context.Background(), &pb.SubmitRequest{Spec: &pb.JobSpec{Command: []string{"true"}, Tenant: "small"}})
	wantStatus(t, err, codes.ResourceExhausted, `tenant "small" is at its max-queued limit of 1`)
	if m := s.httpGet(t, "/metrics"); !strings.Contains(m, `hodei_quota_refusals_total{tenant="small"} 1`) {
		t.Errorf("/metrics does not count the refusal")
	}
}

func TestEffectivePriority(t *testing.T) {
	var offset atomic.Int64 // how far the fake clock is ahead of the real one
	s := setup(t, func(c *Config) {
		c.Aging = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	ctx := context.Background()
	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Priority: proto.Int32(100)})
	done := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Priority: proto.Int32(100)})
	if _, err := s.jobs.Cancel(ctx, &pb.CancelJobRequest{Id: done}); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(30 * time.Minute))

	j, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	// Half the aging waited: half the range added.
	if eff := j.GetEffectivePriority(); eff < 600 || eff > 610 {
		t.Errorf("Get: effective priority %.1f of a priority-100 job after 30m of 1h aging, want about 600", eff)
	}
	list, err := s.jobs.List(ctx, &pb.ListJobsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lj := range list.GetJobs() {
		switch {
		case lj.GetId() == id && lj.GetEffectivePriority() < float64(lj.GetSpec().GetPriority()):
			t.Errorf("List: pending job's effective priority %.1f is below its priority", lj.GetEffectivePriority())
		case lj.GetId() == done && lj.GetEffectivePriority() != 0:
			t.Errorf("List: cancelled job has effective priority %.1f, want none", lj.GetEffectivePriority())
		}
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	w, err := s.jobs.Watch(wctx, &pb.WatchRequest{JobId: id})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetJob().GetEffectivePriority() < 600 {
		t.Errorf("Watch: effective priority %.1f, want at least 600", ev.GetJob().GetEffectivePriority())
	}
}

func TestSetTenantRunningLimitsApart(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	s.setTenant(t, &pb.Tenant{Name: "a", MaxRunning: &pb.Resources{Slots: 8, CpuMillis: 4000}})
	// Two clients change different limits; neither undoes the other.
	for _, req := range []*pb.SetTenantRequest{
		{Tenant: &pb.Tenant{Name: "a", MaxRunning: &pb.Resources{MemoryMib: 1024}}, Fields: []string{"max_running.memory_mib"}},
		{Tenant: &pb.Tenant{Name: "a", MaxRunning: &pb.Resources{CpuMillis: 2000}}, Fields: []string{"max_running.cpu_millis"}},
	} {
		if _, err := s.admin.SetTenant(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.admin.GetTenant(ctx, &pb.GetTenantRequest{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if r := st.GetTenant().GetMaxRunning(); r.GetSlots() != 8 || r.GetCpuMillis() != 2000 || r.GetMemoryMib() != 1024 {
		t.Fatalf("running limits %v, want slots 8, cpu 2000, memory 1024", r)
	}
}

// TestAssignCarriesRunAs checks that an Assign names the user of the job's
// tenant as it is when the Assign is built: at dispatch, and again when a
// reconnecting agent is sent the job it did not report.
func TestAssignCarriesRunAs(t *testing.T) {
	s := setup(t)
	s.setTenant(t, &pb.Tenant{Name: "batch", RunAs: "nobody"}, "run_as")
	a := connectAgent(t, s, hello("w1", 2))

	id := s.submit(t, &pb.JobSpec{Command: []string{"true"}, Tenant: "batch"})
	if as := a.recv().GetAssign(); as.GetJob().GetId() != id || as.GetRunAs() != "nobody" {
		t.Fatalf("assign = %v, want job %s as nobody", as, id)
	}
	other := s.submit(t, &pb.JobSpec{Command: []string{"true"}})
	if as := a.recv().GetAssign(); as.GetJob().GetId() != other || as.GetRunAs() != "" {
		t.Fatalf("assign = %v, want job %s with no user (the default tenant names none)", as, other)
	}

	// The agent goes away before it reports the job started; back, it is
	// sent the job again, with the tenant's user as it is now.
	s.setTenant(t, &pb.Tenant{Name: "batch", RunAs: "daemon"}, "run_as")
	a.close()
	a = connectAgent(t, s, hello("w1", 2))
	got := map[string]string{}
	for range 2 {
		as := a.recv().GetAssign()
		got[as.GetJob().GetId()] = as.GetRunAs()
	}
	if want := map[string]string{id: "daemon", other: ""}; !maps.Equal(got, want) {
		t.Fatalf("re-sent assigns (job → run_as) = %v, want %v", got, want)
	}
}
