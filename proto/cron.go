package hodeipb

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/hodei-jobs/hodei/job"
)

// ToSchedule converts a wire schedule to the domain, with what the server
// fills left zero. A policy that is not one of its names is a
// *job.FieldError on "overlap" or "catch_up".
func (c *CronSchedule) ToSchedule() (job.Schedule, error) {
	overlap, err := job.ParseOverlap(c.GetOverlap())
	if err != nil {
		return job.Schedule{}, job.Invalid("overlap", "%s", err)
	}
	catchUp, err := job.ParseCatchUp(c.GetCatchUp())
	if err != nil {
		return job.Schedule{}, job.Invalid("catch_up", "%s", err)
	}
	if c.GetStartingDeadlineMs() < 0 {
		return job.Schedule{}, job.Invalid("starting_deadline", "%dms must not be negative", c.GetStartingDeadlineMs())
	}
	s := job.Schedule{
		Name: c.GetName(), Tenant: c.GetTenant(), Expr: c.GetSchedule(), TimeZone: c.GetTimezone(),
		Overlap: overlap, CatchUp: catchUp, StartingDeadline: time.Duration(c.GetStartingDeadlineMs()) * time.Millisecond,
		Paused: c.GetPaused(),
	}
	switch {
	case c.GetPipeline() != nil && c.GetJob() != nil:
		return job.Schedule{}, job.Invalid("pipeline", "a schedule runs a job or a pipeline, not both")
	case c.GetPipeline() != nil:
		p := c.GetPipeline().ToPipelineSpec()
		s.Pipeline = &p
	case c.GetJob() != nil:
		s.Spec = c.GetJob().ToSpec()
	default:
		return job.Schedule{}, job.Invalid("command", "a schedule needs a command, a job file or a pipeline")
	}
	return s, nil
}

// FromSchedule converts a domain schedule to the wire; lastState is the
// state of its last job (or pipeline), which the schedule does not hold.
// A pipeline schedule shows its defaults and each step with its spec, as
// they were added; secret values are redacted, as everywhere.
func FromSchedule(s *job.Schedule, lastState string) *CronSchedule {
	out := &CronSchedule{
		Name: s.Name, Tenant: s.Tenant, Schedule: s.Expr, Timezone: s.TimeZone,
		Overlap: s.Overlap.String(), CatchUp: s.CatchUp.String(),
		StartingDeadlineMs: s.StartingDeadline.Milliseconds(), Paused: s.Paused,
		CreatedUnixNano: nanos(s.CreatedAt), NextRunUnixNano: nanos(s.NextRun),
		LastTickUnixNano: nanos(s.LastTick), LastRunUnixNano: nanos(s.LastRun),
		LastJob: s.LastJob, LastState: lastState, Skipped: s.Skipped, LastSkip: s.LastSkip,
	}
	if p := s.Pipeline; p != nil {
		ps := &PipelineSpec{Name: p.Name, Tenant: s.Tenant, Defaults: stepSpec(&p.Defaults)}
		for _, st := range p.Steps {
			w := &PipelineStepSpec{Name: st.Name, Spec: stepSpec(&st.Spec), Needs: st.Needs, ContinueOnFailure: st.ContinueOnFailure}
			for _, ax := range st.Matrix {
				w.Matrix = append(w.Matrix, &MatrixAxis{Key: ax.Key, Values: ax.Values})
			}
			ps.Steps = append(ps.Steps, w)
		}
		out.Pipeline = ps
	} else {
		out.Job = FromSpec(&s.Spec)
		out.Job.SecretEnv = redactedEnv(s.Spec.SecretEnv)
	}
	return out
}

// stepSpec is a pipeline step's (or defaults') spec as it was given: a
// priority of -1 (unset, ToPipelineSpec) is left out, and secret values
// are redacted. nil for a spec with nothing set.
func stepSpec(s *job.Spec) *JobSpec {
	out := FromSpec(s)
	if s.Priority < 0 {
		out.Priority = nil
	}
	out.SecretEnv = redactedEnv(s.SecretEnv)
	if proto.Equal(out.Resources, &Resources{}) {
		out.Resources = nil
	}
	if proto.Equal(out, &JobSpec{}) {
		return nil
	}
	return out
}
