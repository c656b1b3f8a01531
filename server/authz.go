package server

// Which permission each RPC needs. The interceptors look every call up
// here; a method missing from the table is refused for everyone, so a new
// RPC is closed until someone decides who may call it (and the
// authorization matrix test, which walks the registered services, fails).

import (
	"strings"

	"github.com/hodei-jobs/hodei/auth"
	pb "github.com/hodei-jobs/hodei/proto"
)

// rule is what one RPC needs.
type rule struct {
	perm auth.Permission
	// open: no authentication at all (gRPC health).
	open bool
	// audited: every call is recorded, not only denials: the mutating
	// calls, and reads of everything at once (snapshots).
	audited bool
}

var methodRules = map[string]rule{
	pb.JobService_Submit_FullMethodName:         {perm: auth.Submit, audited: true},
	pb.JobService_SubmitBatch_FullMethodName:    {perm: auth.Submit, audited: true},
	pb.JobService_Get_FullMethodName:            {perm: auth.ReadJobs},
	pb.JobService_List_FullMethodName:           {perm: auth.ReadJobs},
	pb.JobService_Cancel_FullMethodName:         {perm: auth.Cancel, audited: true},
	pb.JobService_Watch_FullMethodName:          {perm: auth.ReadJobs},
	pb.JobService_Logs_FullMethodName:           {perm: auth.ReadJobs},
	pb.JobService_CancelArray_FullMethodName:    {perm: auth.Cancel, audited: true},
	pb.JobService_RunPipeline_FullMethodName:    {perm: auth.Submit, audited: true},
	pb.JobService_GetPipeline_FullMethodName:    {perm: auth.ReadJobs},
	pb.JobService_ListPipelines_FullMethodName:  {perm: auth.ReadJobs},
	pb.JobService_CancelPipeline_FullMethodName: {perm: auth.Cancel, audited: true},
	// Attach reads; taking a job's input needs auth.Cancel, checked and
	// audited by the handler (claimInput).
	pb.JobService_Attach_FullMethodName:  {perm: auth.ReadJobs},
	pb.JobService_Resolve_FullMethodName: {perm: auth.ReadJobs}, // workers: also ManageWorkers, in the handler
	// Cron: adding, resuming and running a schedule submit jobs; pausing
	// and removing one stop them, as a cancel does.
	pb.JobService_CronAdd_FullMethodName:    {perm: auth.Submit, audited: true},
	pb.JobService_CronList_FullMethodName:   {perm: auth.ReadJobs},
	pb.JobService_CronGet_FullMethodName:    {perm: auth.ReadJobs},
	pb.JobService_CronPause_FullMethodName:  {perm: auth.Cancel, audited: true},
	pb.JobService_CronResume_FullMethodName: {perm: auth.Submit, audited: true},
	pb.JobService_CronRemove_FullMethodName: {perm: auth.Cancel, audited: true},
	pb.JobService_CronRun_FullMethodName:    {perm: auth.Submit, audited: true},

	pb.AgentService_Connect_FullMethodName: {perm: auth.RunJobs, audited: true},
	pb.AgentService_Join_FullMethodName:    {perm: auth.Join, audited: true},

	pb.AdminService_ListWorkers_FullMethodName:  {perm: auth.ManageWorkers},
	pb.AdminService_DrainWorker_FullMethodName:  {perm: auth.ManageWorkers, audited: true},
	pb.AdminService_RevokeWorker_FullMethodName: {perm: auth.ManageWorkers, audited: true},
	pb.AdminService_RemoveWorker_FullMethodName: {perm: auth.ManageWorkers, audited: true},
	pb.AdminService_Snapshot_FullMethodName:     {perm: auth.Snapshot, audited: true},
	pb.AdminService_SetTenant_FullMethodName:    {perm: auth.ManageTenants, audited: true},
	pb.AdminService_GetTenant_FullMethodName:    {perm: auth.ReadTenants},
	pb.AdminService_ListTenants_FullMethodName:  {perm: auth.ReadTenants},
	pb.AdminService_DeleteTenant_FullMethodName: {perm: auth.ManageTenants, audited: true},
	pb.AdminService_CreateToken_FullMethodName:  {perm: auth.ManageTokens, audited: true},
	pb.AdminService_ListTokens_FullMethodName:   {perm: auth.ManageTokens},
	pb.AdminService_RevokeToken_FullMethodName:  {perm: auth.ManageTokens, audited: true},
	pb.AdminService_WhoAmI_FullMethodName:       {perm: auth.WhoAmI},
	pb.AdminService_ListAudit_FullMethodName:    {perm: auth.ReadAudit},

	pb.AdminService_UndrainWorker_FullMethodName: {perm: auth.ManageWorkers, audited: true},
	// Usage: its per-attempt records name jobs, so it needs what reading
	// jobs needs, limited to the token's tenants as jobs are.
	pb.AdminService_GetUsage_FullMethodName: {perm: auth.ReadJobs},
}

// ruleOf returns the rule of a full method name and whether there is one.
// The health service is open; server reflection is for admins.
func ruleOf(method string) (rule, bool) {
	if r, ok := methodRules[method]; ok {
		return r, true
	}
	switch {
	case strings.HasPrefix(method, "/grpc.health.v1.Health/"):
		return rule{open: true}, true
	case strings.HasPrefix(method, "/grpc.reflection.v1.ServerReflection/"),
		strings.HasPrefix(method, "/grpc.reflection.v1alpha.ServerReflection/"):
		return rule{perm: auth.Reflection}, true
	}
	return rule{}, false
}
