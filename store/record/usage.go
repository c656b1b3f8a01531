package record

import (
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// MarshalUsage encodes the usage record of one ended attempt; its key (end
// time, job id, attempt) is the store's.
func MarshalUsage(a *job.AttemptUsage) ([]byte, error) {
	return encode("usage of", a.JobID, &UsageRecord{
		Job: a.JobID, Attempt: int64(a.Attempt), Tenant: a.Tenant, Owner: a.Owner, Labels: a.Labels,
		Slots: a.Slots, StartedUnixNano: nanos(a.StartedAt), FinishedUnixNano: nanos(a.FinishedAt),
		WallNanos: int64(a.Usage.Wall), CpuNanos: int64(a.Usage.CPUTime), MaxRssKib: a.Usage.MaxRSSKiB,
		State: int32(a.State), ExitCode: int64(a.ExitCode), Name: a.Name, Worker: a.Worker,
	})
}

// UnmarshalUsage decodes a usage record; key names it in errors.
func UnmarshalUsage(key string, b []byte) (*job.AttemptUsage, error) {
	var r UsageRecord
	if err := decode("usage record", key, b, &r); err != nil {
		return nil, err
	}
	return &job.AttemptUsage{
		JobID: r.Job, Attempt: int(r.Attempt), Name: r.Name, Tenant: r.Tenant, Owner: r.Owner,
		Labels: r.Labels, Worker: r.Worker, Slots: r.Slots,
		StartedAt: fromNanos(r.StartedUnixNano), FinishedAt: fromNanos(r.FinishedUnixNano),
		State: job.State(r.State), ExitCode: int(r.ExitCode),
		Usage: job.Usage{Attempt: int(r.Attempt), Wall: time.Duration(r.WallNanos),
			CPUTime: time.Duration(r.CpuNanos), MaxRSSKiB: r.MaxRssKib},
	}, nil
}

// MarshalRollup encodes the sums of one roll-up.
func MarshalRollup(s job.UsageSums) ([]byte, error) {
	return encode("roll-up", "", &RollupRecord{
		Attempts: s.Attempts, WallMicros: s.WallMicros, CpuMicros: s.CPUMicros,
		SlotMicros: s.SlotMicros, MaxRssKib: s.MaxRSSKiB,
	})
}

// UnmarshalRollup decodes a roll-up; key names it in errors.
func UnmarshalRollup(key string, b []byte) (job.UsageSums, error) {
	var r RollupRecord
	if err := decode("roll-up", key, b, &r); err != nil {
		return job.UsageSums{}, err
	}
	return job.UsageSums{Attempts: r.Attempts, WallMicros: r.WallMicros, CPUMicros: r.CpuMicros,
		SlotMicros: r.SlotMicros, MaxRSSKiB: r.MaxRssKib}, nil
}
