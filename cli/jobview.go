package cli

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// jobView is a job as `--output json` shows it: stable keys, names instead
// of enum numbers, RFC 3339 times omitted when unset, and no field that
// means nothing yet (a PENDING job has no exit_code, worker or started
// time). The spec is shown whole but for the values of its environment:
// env and secret_env list names only.
type jobView struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Tenant            string            `json:"tenant"`
	State             string            `json:"state"`
	Attempt           int32             `json:"attempt"`
	ExitCode          *int32            `json:"exit_code,omitempty"` // once it ended after starting
	Signal            int32             `json:"signal,omitempty"`    // that ended the process; exit_code is then -1
	Reason            string            `json:"reason,omitempty"`
	PendingReason     string            `json:"pending_reason,omitempty"` // why a pending job waits
	PendingKind       string            `json:"pending_kind,omitempty"`   // which kind of reason: labels, slots, queued …
	Worker            string            `json:"worker,omitempty"`
	Priority          int32             `json:"priority"`
	EffectivePriority float64           `json:"effective_priority,omitempty"` // pending jobs only
	Preemptible       bool              `json:"preemptible"`
	Deadline          time.Time         `json:"deadline,omitzero"`
	DeadlineMissed    bool              `json:"deadline_missed,omitempty"`
	Preemptions       int32             `json:"preemptions,omitempty"`
	Labels            map[string]string `json:"labels"`
	Command           []string          `json:"command"`
	Script            string            `json:"script,omitempty"`
	Selector          map[string]string `json:"selector,omitempty"`
	Resources         *resourcesView    `json:"resources,omitempty"`
	Timeout           string            `json:"timeout,omitempty"`
	Retries           int32             `json:"retries,omitempty"`
	Backoff           string            `json:"backoff,omitempty"`    // with retries only
	Env               []string          `json:"env,omitempty"`        // names only
	SecretEnv         []string          `json:"secret_env,omitempty"` // names only; values are never shown
	Workdir           string            `json:"workdir,omitempty"`
	NoPTY             bool              `json:"no_pty,omitempty"`
	DependsOn         []string          `json:"depends_on,omitempty"`
	Pipeline          string            `json:"pipeline,omitempty"`
	Step              string            `json:"step,omitempty"`
	Array             string            `json:"array,omitempty"`
	ArrayIndex        *int32            `json:"array_index,omitempty"` // with array only
	ArrayLimit        int32             `json:"array_limit,omitempty"`
	CancelRequested   string            `json:"cancel_requested,omitempty"`
	Created           time.Time         `json:"created,omitzero"`
	Scheduled         time.Time         `json:"scheduled,omitzero"`
	Started           time.Time         `json:"started,omitzero"`
	Finished          time.Time         `json:"finished,omitzero"`
	Owner             string            `json:"owner,omitempty"` // who submitted it
	Usage             *jobUsageView     `json:"usage,omitempty"` // of the last ended attempt
}

// jobUsageView is what a job's last ended attempt used, times in seconds.
type jobUsageView struct {
	Attempt     int32   `json:"attempt"`
	WallSeconds float64 `json:"wall_seconds"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	SlotSeconds float64 `json:"slot_seconds"`
	MaxRSSKiB   int64   `json:"max_rss_kib"`
}

// newJobUsageView is u as --output json shows it; nil before an attempt
// ended.
func newJobUsageView(u *hodeipb.Usage) *jobUsageView {
	if u.GetAttempt() == 0 {
		return nil
	}
	return &jobUsageView{Attempt: u.GetAttempt(), WallSeconds: time.Duration(u.GetWallTimeNs()).Seconds(),
		CPUSeconds: time.Duration(u.GetCpuTimeNs()).Seconds(), SlotSeconds: time.Duration(u.GetSlotTimeNs()).Seconds(),
		MaxRSSKiB: u.GetMaxRssKib()}
}

func newJobView(j *hodeipb.Job) jobView {
	s := j.GetSpec()
	prio := int32(job.DefaultPriority)
	if s.Priority != nil {
		prio = s.GetPriority()
	}
	cmd := s.GetCommand()
	if cmd == nil {
		cmd = []string{}
	}
	var eff float64
	if j.GetState() == hodeipb.JobState_JOB_STATE_PENDING {
		eff = j.GetEffectivePriority()
	}
	var index *int32
	if s.GetArray() != "" {
		index = proto.Int32(s.GetArrayIndex())
	}
	var exit *int32
	if exitShown(j) {
		exit = proto.Int32(j.GetExitCode())
	}
	var res *resourcesView
	if r := s.GetResources(); r != nil {
		v := newResourcesView(r)
		res = &v
	}
	var timeout, backoff string
	if ms := s.GetTimeoutMs(); ms > 0 {
		timeout = msDuration(ms)
	}
	if s.GetRetries() > 0 {
		backoff = msDuration(max(s.GetBackoffMs(), int64(job.DefaultBackoff/time.Millisecond)))
	}
	return jobView{
		ID:                j.GetId(),
		Name:              s.GetName(),
		Tenant:            s.GetTenant(),
		State:             hodeipb.StateName(j.GetState()),
		Attempt:           j.GetAttempt(),
		ExitCode:          exit,
		Signal:            j.GetSignal(),
		Reason:            j.GetReason(),
		PendingReason:     j.GetPending().GetMessage(),
		PendingKind:       pendingKindName(j.GetPending().GetKind()),
		Worker:            j.GetWorker(),
		Priority:          prio,
		EffectivePriority: eff,
		Preemptible:       s.GetPreemptible(),
		Deadline:          unixNano(s.GetDeadlineUnixNano()),
		DeadlineMissed:    j.GetDeadlineMissed(),
		Preemptions:       j.GetPreemptions(),
		Labels:            nonNil(s.GetLabels()),
		Command:           cmd,
		Script:            s.GetScript(),
		Selector:          s.GetSelector(),
		Resources:         res,
		Timeout:           timeout,
		Retries:           s.GetRetries(),
		Backoff:           backoff,
		Env:               names(s.GetEnv()),
		SecretEnv:         names(s.GetSecretEnv()),
		Workdir:           s.GetWorkdir(),
		NoPTY:             s.GetNoPty(),
		DependsOn:         s.GetDependsOn(),
		Pipeline:          s.GetPipeline(),
		Step:              s.GetStep(),
		Array:             s.GetArray(),
		ArrayIndex:        index,
		ArrayLimit:        s.GetArrayLimit(),
		CancelRequested:   j.GetCancelRequested(),
		Created:           unixNano(j.GetCreatedUnixNano()),
		Scheduled:         unixNano(j.GetScheduledUnixNano()),
		Started:           unixNano(j.GetStartedUnixNano()),
		Finished:          unixNano(j.GetFinishedUnixNano()),
		Owner:             j.GetOwner(),
		Usage:             newJobUsageView(j.GetUsage()),
	}
}

// names returns the keys of an environment, sorted: its values are not
// shown (those of secret_env never reach the client anyway).
func names(env map[string]string) []string {
	if len(env) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(env))
}

// msDuration shows milliseconds as a Go duration: 1m30s.
func msDuration(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

// newJobTable starts a table of jobs with its header.
func newJobTable(w io.Writer) *table {
	return newTable(w, "ID", "NAME", "TENANT", "STATE", "PRIO", "EFF-PRIO", "ATTEMPT", "EXIT", "WORKER", "AGE", "REASON")
}

// jobRow adds j to a table of jobs.
func jobRow(t *table, now time.Time, j *hodeipb.Job) {
	v := newJobView(j)
	t.row(v.ID, v.Name, v.Tenant, stateCell(j), strconv.Itoa(int(v.Priority)), effPrioCell(v), strconv.Itoa(int(v.Attempt)),
		exitCell(j), v.Worker, age(now, v.Created), reasonCell(j))
}

// stateCell is the state a table shows for j: CANCELLING for a job not
// yet ended whose cancel its agent is carrying out (its state is still
// RUNNING or SCHEDULED, as -o json says, with cancel_requested), as
// `jobs cancel` said; else its state.
func stateCell(j *hodeipb.Job) string {
	if j.GetCancelRequested() != "" && !job.State(j.GetState()).Terminal() {
		return cancellingState
	}
	return hodeipb.StateName(j.GetState())
}

// cancellingState is what tables show for a job being cancelled; it is
// no state of its own (see stateCell).
const cancellingState = "CANCELLING"

// reasonCell is why a pending job waits, when the server said, else the
// job's recorded reason.
func reasonCell(j *hodeipb.Job) string {
	if stateCell(j) == cancellingState && j.GetReason() == "" {
		return "being stopped: " + j.GetCancelRequested()
	}
	return cmp.Or(j.GetPending().GetMessage(), j.GetReason())
}

// pendingKindName is a PendingKind as JSON shows it: "labels",
// "tenant-limit"; "" for none.
func pendingKindName(k hodeipb.PendingKind) string {
	if k == hodeipb.PendingKind_PENDING_KIND_UNSPECIFIED {
		return ""
	}
	name := strings.TrimPrefix(k.String(), "PENDING_KIND_")
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// effPrioCell is the effective priority of a pending job, to one decimal;
// other jobs do not rank, and show "-".
func effPrioCell(v jobView) string {
	if v.State != job.Pending.String() {
		return ""
	}
	return strconv.FormatFloat(v.EffectivePriority, 'f', 1, 64)
}

// exitShown reports whether j has an exit code to show: it ended after it
// started; a code is not shown while a retry may still replace it.
func exitShown(j *hodeipb.Job) bool {
	st := job.State(j.GetState())
	return st.Terminal() && (st != job.Cancelled || j.GetStartedUnixNano() != 0)
}

// exitCell is the exit code of a job that ended after it started (see
// exitShown).
func exitCell(j *hodeipb.Job) string {
	if !exitShown(j) {
		return ""
	}
	if sig := j.GetSignal(); sig > 0 {
		// As a shell reports it, with the signal's name: 137 (SIGKILL).
		name := unix.SignalName(syscall.Signal(sig))
		if name == "" {
			name = "signal " + strconv.Itoa(int(sig))
		}
		return strconv.Itoa(128+int(sig)) + " (" + name + ")"
	}
	return strconv.Itoa(int(j.GetExitCode()))
}

// writeJobDetail writes one job as "Field: value" lines: its status, then
// its whole spec (environment names only), then its times.
func writeJobDetail(w io.Writer, now time.Time, j *hodeipb.Job) error {
	v := newJobView(j)
	d := newDetail(w, now)
	line, when := d.line, d.when
	line("ID", v.ID)
	line("Name", v.Name)
	line("Tenant", v.Tenant)
	line("State", stateCell(j))
	line("Attempt", strconv.Itoa(int(v.Attempt)))
	line("Exit code", exitCell(j))
	line("Reason", reasonCell(j))
	if v.PendingReason != "" && v.Reason != "" {
		line("Last attempt", v.Reason) // why it is pending again
	}
	if v.CancelRequested != "" {
		line("Cancel requested", v.CancelRequested)
	}
	line("Worker", v.Worker)
	line("Priority", strconv.Itoa(int(v.Priority)))
	if eff := effPrioCell(v); eff != "" {
		line("Effective priority", eff)
	}
	if !v.Deadline.IsZero() {
		dl := v.Deadline.Format(time.RFC3339)
		if v.DeadlineMissed {
			dl += " (missed)"
		}
		line("Deadline", dl)
	}
	if v.Preemptible {
		line("Preemptible", "true")
	}
	if v.Preemptions > 0 {
		line("Preemptions", strconv.Itoa(int(v.Preemptions)))
	}
	line("Labels", pairs(v.Labels))
	if v.Script != "" {
		line("Script", v.Script)
	} else {
		line("Command", quoteArgv(v.Command))
	}
	line("Selector", pairs(v.Selector))
	if r := v.Resources; r != nil {
		line("Resources", fmt.Sprintf("cpu=%dm memory=%s slots=%d", r.CPUMillis, mib(r.MemoryMiB), r.Slots))
	} else {
		line("Resources", "slots=1")
	}
	line("Timeout", cmp.Or(v.Timeout, "none"))
	if v.Retries > 0 {
		line("Retries", fmt.Sprintf("%d (backoff %s, doubled each retry)", v.Retries, v.Backoff))
	} else {
		line("Retries", "0")
	}
	line("Env", strings.Join(v.Env, ","))
	if len(v.SecretEnv) > 0 {
		line("Secret env", strings.Join(v.SecretEnv, ",")+" (values hidden)")
	}
	line("Workdir", v.Workdir)
	if v.NoPTY {
		line("PTY", "no (stdout and stderr apart)")
	}
	if len(v.DependsOn) > 0 {
		line("After", strings.Join(v.DependsOn, ","))
	}
	if v.Pipeline != "" {
		line("Pipeline", v.Pipeline+", step "+v.Step)
	}
	if v.Array != "" {
		arr := fmt.Sprintf("%s, index %d", v.Array, *v.ArrayIndex)
		if v.ArrayLimit > 0 {
			arr += fmt.Sprintf(", at most %d running", v.ArrayLimit)
		}
		line("Array", arr)
	}
	if v.Owner != "" {
		line("Submitted by", v.Owner)
	}
	line("Created", when(v.Created))
	line("Scheduled", when(v.Scheduled))
	line("Started", when(v.Started))
	line("Finished", when(v.Finished))
	if u := j.GetUsage(); v.Usage != nil {
		line("Usage", fmt.Sprintf("attempt %d: wall %s, cpu %s, slot-time %s, max rss %s", u.GetAttempt(),
			spanText(u.GetWallTimeNs()/1e3), spanText(u.GetCpuTimeNs()/1e3), spanText(u.GetSlotTimeNs()/1e3), kibText(u.GetMaxRssKib())))
	}
	return d.flush()
}

// quoteArgv joins argv for display, quoting the words a shell would split.
func quoteArgv(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`*?[]{}()<>|&;#~") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}
