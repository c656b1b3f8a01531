package record

import (
	"fmt"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// MarshalSchedule encodes a schedule; job.ScheduleKey is its key. Its job
// template (or each spec of its pipeline) is kept as a job record's spec,
// so that one converter serves jobs, arrays and schedules.
func MarshalSchedule(s *job.Schedule) ([]byte, error) {
	key := s.Key()
	rec := &ScheduleRecord{
		Expr: s.Expr, TimeZone: s.TimeZone, Overlap: int32(s.Overlap), CatchUp: int32(s.CatchUp),
		StartingDeadlineNanos: int64(s.StartingDeadline), Paused: s.Paused,
		CreatedUnixNano: nanos(s.CreatedAt), NextRunUnixNano: nanos(s.NextRun),
		LastTickUnixNano: nanos(s.LastTick), LastRunUnixNano: nanos(s.LastRun), LastJob: s.LastJob,
		Skipped: s.Skipped, LastSkip: s.LastSkip, Version: s.Version,
	}
	if p := s.Pipeline; p != nil {
		defs, err := specBytes(key, p.Defaults)
		if err != nil {
			return nil, err
		}
		pt := &PipelineTemplate{Name: p.Name, Defaults: defs}
		for _, st := range p.Steps {
			b, err := specBytes(key, st.Spec)
			if err != nil {
				return nil, err
			}
			ps := &PipelineTemplate_Step{Name: st.Name, Spec: b, Needs: st.Needs, ContinueOnFailure: st.ContinueOnFailure}
			for _, ax := range st.Matrix {
				ps.Matrix = append(ps.Matrix, &PipelineTemplate_Axis{Key: ax.Key, Values: ax.Values})
			}
			pt.Steps = append(pt.Steps, ps)
		}
		rec.Pipeline = pt
	} else {
		b, err := specBytes(key, s.Spec)
		if err != nil {
			return nil, err
		}
		rec.Job = b
	}
	return encode("schedule", key, rec)
}

// specBytes encodes a spec as a job record (with no id, state or times).
func specBytes(key string, sp job.Spec) ([]byte, error) {
	sp.Tenant = "" // the key holds it
	b, err := MarshalJob(&job.Job{Spec: sp}, 0)
	if err != nil {
		return nil, fmt.Errorf("encode schedule %s: %w", key, err)
	}
	return b, nil
}

// UnmarshalSchedule decodes the schedule stored under key.
func UnmarshalSchedule(key string, b []byte) (*job.Schedule, error) {
	var rec ScheduleRecord
	if err := decode("schedule", key, b, &rec); err != nil {
		return nil, err
	}
	tenant, name, ok := strings.Cut(key, "/")
	if !ok {
		return nil, fmt.Errorf("decode schedule %q: the key is not tenant/name", key)
	}
	s := &job.Schedule{
		Name: name, Tenant: tenant, Expr: rec.Expr, TimeZone: rec.TimeZone,
		Overlap: job.Overlap(rec.Overlap), CatchUp: job.CatchUp(rec.CatchUp),
		StartingDeadline: time.Duration(rec.StartingDeadlineNanos), Paused: rec.Paused,
		CreatedAt: fromNanos(rec.CreatedUnixNano), NextRun: fromNanos(rec.NextRunUnixNano),
		LastTick: fromNanos(rec.LastTickUnixNano), LastRun: fromNanos(rec.LastRunUnixNano),
		LastJob: rec.LastJob, Skipped: rec.Skipped, LastSkip: rec.LastSkip, Version: rec.Version,
	}
	spec := func(b []byte) (job.Spec, error) {
		j, err := UnmarshalJob(key, b)
		if err != nil {
			return job.Spec{}, fmt.Errorf("decode schedule %s: %w", key, err)
		}
		return j.Spec, nil
	}
	if pt := rec.Pipeline; pt != nil {
		defs, err := spec(pt.Defaults)
		if err != nil {
			return nil, err
		}
		p := &job.PipelineSpec{Name: pt.Name, Tenant: tenant, Defaults: defs}
		for _, ps := range pt.Steps {
			sp, err := spec(ps.Spec)
			if err != nil {
				return nil, err
			}
			st := job.Step{Name: ps.Name, Spec: sp, Needs: ps.Needs, ContinueOnFailure: ps.ContinueOnFailure}
			for _, ax := range ps.Matrix {
				st.Matrix = append(st.Matrix, job.MatrixAxis{Key: ax.Key, Values: ax.Values})
			}
			p.Steps = append(p.Steps, st)
		}
		s.Pipeline = p
	} else {
		sp, err := spec(rec.Job)
		if err != nil {
			return nil, err
		}
		sp.Tenant = tenant
		s.Spec = sp
	}
	return s, nil
}

// CheckScheduleVersion compares a stored schedule (nil: none) with the
// version a write expects (0: none stored): the compare both stores make
// before they write a schedule.
func CheckScheduleVersion(key string, stored []byte, expect uint64) error {
	switch {
	case stored == nil && expect == 0:
		return nil
	case stored == nil:
		return fmt.Errorf("schedule %s: %w", key, job.ErrNotFound)
	case expect == 0:
		return fmt.Errorf("schedule %s: already exists: %w", key, job.ErrConflict)
	}
	cur, err := UnmarshalSchedule(key, stored)
	if err != nil {
		return err
	}
	if cur.Version != expect {
		return fmt.Errorf("schedule %s: version %d, not %d: %w", key, cur.Version, expect, job.ErrConflict)
	}
	return nil
}
