package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/store"
)

// logChunk is the most output one LogData message carries. grpc-go
// marshals each message into a buffer of its pool's tiers (256 B, 4, 16
// and 32 KiB, then 1 MiB) and holds it until the bytes are on the wire;
// a stream whose client does not read keeps a few messages queued (its
// 64 KiB write quota, plus the one that waits for it). A 64 KiB chunk
// took a 1 MiB buffer, about 3 MiB per stuck stream; this size fits a
// LogData, or an AttachResponse around one, in the 16 KiB tier, the
// size of an HTTP/2 frame (BenchmarkNonReadingStreams).
const logChunk = 16<<10 - 64

// jobService implements JobService.
type jobService struct {
	pb.UnimplementedJobServiceServer
	srv *Server
}

func (js *jobService) Submit(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	if req.GetSpec() == nil {
		return nil, invalid("spec", "is required")
	}
	tenant, err := scopeTenant(ctx, req.GetSpec().GetTenant())
	if err != nil {
		return nil, err
	}
	req.Spec.Tenant = tenant
	for i, dep := range req.GetSpec().GetDependsOn() {
		// --after takes a prefix of an id like every other id.
		if !job.ValidID(dep) {
			id, err := js.srv.sched.Resolve(ctx, job.KindJob, "after", dep, callerTenants(ctx))
			if errors.Is(err, job.ErrInvalid) {
				return nil, toStatus(err)
			}
			if err == nil {
				req.Spec.DependsOn[i], dep = id, id
			}
		}
		// A job of a tenant the caller may not see is no dependency of
		// its: the answer is the one for a job that does not exist.
		if d, err := js.srv.sched.Get(ctx, dep); err == nil && !sees(ctx, d.Spec.Tenant) {
			return nil, toStatus(job.UnknownDependency(dep))
		}
	}
	if req.GetRequireFit() {
		if err := js.srv.sched.FitError(req.GetSpec().ToSpec()); err != nil {
			return nil, noFit(err)
		}
	}
	if req.GetArray() != "" {
		return js.submitArray(ctx, req)
	}
	spec := req.GetSpec().ToSpec()
	spec.Owner = owner(ctx)
	j, err := js.srv.sched.Submit(ctx, spec)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.SubmitResponse{Id: j.ID}, nil
}

func (js *jobService) Get(ctx context.Context, req *pb.GetJobRequest) (*pb.Job, error) {
	j, err := js.srv.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return js.srv.jobWhyPB(j), nil
}

// job looks a job up by id or any unique prefix of one, or a task of an
// array by ARRAY[INDEX] (ARRAY an array's id or a prefix of it). A job of
// a tenant the caller may not see is not found.
func (s *Server) job(ctx context.Context, ref string) (*job.Job, error) {
	return s.jobNamed(ctx, "id", ref)
}

// jobNamed is job for a request whose field names ref in errors.
func (s *Server) jobNamed(ctx context.Context, field, ref string) (*job.Job, error) {
	var id string
	if array, index, ok := cutTaskRef(ref); ok {
		arrayID, err := s.resolve(ctx, job.KindArray, field, array)
		if err != nil {
			return nil, err
		}
		a, found := s.sched.Array(arrayID)
		if !found || !sees(ctx, a.Spec.Tenant) {
			return nil, notFound("array", arrayID)
		}
		if index < a.First || index > a.Last {
			return nil, notFoundf("array %s has tasks %d to %d, not %d", arrayID, a.First, a.Last, index)
		}
		id = job.TaskID(arrayID, index-a.First)
	} else {
		var err error
		if isTaskRef(ref) {
			return nil, invalid(field, "%q: a task is ARRAY[INDEX], ARRAY the start of an array id and INDEX a whole number, 0 or more", ref)
		}
		if id, err = s.resolve(ctx, job.KindJob, field, ref); err != nil {
			return nil, err
		}
	}
	j, err := s.sched.Get(ctx, id)
	if errors.Is(err, job.ErrNotFound) {
		if a, found := s.sched.Array(id); found && sees(ctx, a.Spec.Tenant) {
			return nil, notArrayJob(id)
		}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if !sees(ctx, j.Spec.Tenant) {
		return nil, notFound("job", id)
	}
	return j, nil
}

// notArrayJob is the answer for an array's id given where a job's is
// wanted.
func notArrayJob(id string) error {
	return notFoundf("%s is an array, not a job: list its tasks with hodei jobs ls --array %s, or see one with hodei jobs get '%s[INDEX]'", id, id, id)
}

// jobPB is a job as API answers show it: secrets redacted and, while it is
// Pending, its effective priority now. The answer is a fresh message, so
// setting fields on it touches nothing shared.
func (s *Server) jobPB(j *job.Job) *pb.Job {
	p := pb.Redacted(j)
	if j.State == job.Pending {
		p.EffectivePriority = s.sched.EffectivePriority(j)
	}
	return p
}

// jobWhyPB is jobPB plus, for a Pending job, why it waits (see
// cluster.Cluster.Why): for the answers people read, Get, List and
// pipelines, not for Watch's stream of changes.
func (s *Server) jobWhyPB(j *job.Job) *pb.Job {
	p := s.jobPB(j)
	if j.State == job.Pending {
		if why := s.sched.Why(j); why.Kind != scheduler.WhyNone {
			p.Pending = &pb.PendingReason{Kind: pb.PendingKind(why.Kind), Message: why.String()}
		}
	}
	return p
}

func (js *jobService) List(ctx context.Context, req *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	f := job.Filter{
		State:             job.State(req.GetState()),
		Tenant:            req.GetTenant(),
		Labels:            req.GetLabels(),
		Array:             req.GetArray(),
		Pipeline:          req.GetPipeline(),
		Name:              req.GetName(),
		Since:             unixNanos(req.GetCreatedSinceUnixNano()),
		NotFinishedBefore: unixNanos(req.GetNotFinishedBeforeUnixNano()),
		Desc:              req.GetNewestFirst(),
		After:             req.GetPageToken(),
		Limit:             int(req.GetPageSize()),
	}
	switch {
	case len(f.Name) > job.MaxNameLen:
		return nil, invalid("name", "is %d bytes; a job name is at most %d", len(f.Name), job.MaxNameLen)
	case !utf8.ValidString(f.Name):
		return nil, invalid("name", "is not valid UTF-8")
	case f.State != 0 && !f.State.Valid():
		return nil, invalid("state", "%d is not a job state", req.GetState())
	case f.Limit < 0 || f.Limit > job.MaxPageSize:
		return nil, invalid("page_size", "%d must be between 0 and %d", f.Limit, job.MaxPageSize)
	case f.After != "" && !job.ValidID(f.After):
		return nil, invalid("page_token", "%q is not a page token from an earlier answer", f.After)
	case req.GetCreatedSinceUnixNano() < 0:
		return nil, invalid("created_since_unix_nano", "%d must not be negative (0: any time)", req.GetCreatedSinceUnixNano())
	case req.GetNotFinishedBeforeUnixNano() < 0:
		return nil, invalid("not_finished_before_unix_nano", "%d must not be negative (0: every job)", req.GetNotFinishedBeforeUnixNano())
	}
	if err := scopeFilter(ctx, f.Tenant); err != nil {
		return nil, err
	}
	var err error
	if f.Array != "" {
		if f.Array, err = js.srv.resolve(ctx, job.KindArray, "array", f.Array); err != nil {
			return nil, err
		}
	}
	if f.Pipeline != "" {
		if f.Pipeline, err = js.srv.resolve(ctx, job.KindPipeline, "pipeline", f.Pipeline); err != nil {
			return nil, err
		}
	}
	jobs, next, err := js.srv.listScoped(ctx, f)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListJobsResponse{NextPageToken: next, Jobs: make([]*pb.Job, len(jobs))}
	for i, j := range jobs {
		resp.Jobs[i] = js.srv.jobWhyPB(j)
	}
	if req.GetCount() {
		n, exact, err := js.srv.countScoped(ctx, f)
		if err != nil {
			return nil, err
		}
		resp.Total, resp.TotalIsLowerBound = int64(n), !exact
	}
	return resp, nil
}

// unixNanos is a time of the API: 0 is none.
func unixNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func (js *jobService) Cancel(ctx context.Context, req *pb.CancelJobRequest) (*pb.Job, error) {
	cur, err := js.srv.job(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if cur.State.Terminal() {
		// Already ended: a second cancel is no mistake; say where it is.
		return js.srv.jobPB(cur), nil
	}
	j, err := js.srv.sched.Cancel(ctx, cur.ID, req.GetReason())
	if errors.Is(err, job.ErrConflict) {
		// It ended meanwhile.
		if now, gerr := js.srv.sched.Get(ctx, cur.ID); gerr == nil && now.State.Terminal() {
			return js.srv.jobPB(now), nil
		}
	}
	if err != nil {
		return nil, toStatus(err)
	}
	return js.srv.jobPB(j), nil
}

// Watch streams the changes that req selects from the event journal
// (journal.go): from now, or with after from the event after that cursor.
func (js *jobService) Watch(req *pb.WatchRequest, stream pb.JobService_WatchServer) error {
	s := js.srv
	ctx := stream.Context()
	f := watchFilter{tenant: req.GetTenant(), state: job.State(req.GetState()), kinds: req.GetAllKinds()}
	if _, ok := pb.JobState_name[int32(req.GetState())]; !ok {
		return invalid("state", "%d is not a job state", req.GetState())
	}
	if err := scopeFilter(ctx, f.tenant); err != nil {
		return err
	}
	if id := req.GetJobId(); id != "" {
		j, err := s.job(ctx, id)
		if err != nil {
			return err
		}
		f.job = j.ID
	}
	if p := req.GetPipeline(); p != "" {
		id, err := s.resolve(ctx, job.KindPipeline, "pipeline", p)
		if err != nil {
			return err
		}
		f.pipeline = id
	}
	id := auth.FromContext(ctx) // nil: an in-process caller, which sees everything
	f.workers = f.kinds && f.job == "" && f.pipeline == "" && (id == nil || id.Allow(auth.ManageWorkers) == nil)
	release, err := s.following.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	next := s.journal.head()
	resumed, stale := false, false
	if a := req.GetAfter(); a != "" {
		n, ok, err := s.journal.after(a)
		if err != nil {
			return toStatus(err)
		}
		if ok {
			next, resumed = n, true
		} else {
			stale = true // a cursor of another run of the server
		}
	}
	// The header at once: the watch is set up (an HTTP client starts its
	// event stream on it), whether or not an event comes soon.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	if stale {
		if err := stream.Send(&pb.JobEvent{Reset_: true, Cursor: s.journal.cursor(next - 1)}); err != nil {
			return err
		}
	}
	if f.job != "" && !resumed {
		// The current state first, so a watcher never misses the end; its
		// cursor is the last event before the watch began.
		j, err := s.sched.Get(ctx, f.job)
		if err != nil {
			return toStatus(err)
		}
		if err := stream.Send(&pb.JobEvent{Job: s.jobPB(j), Cursor: s.journal.cursor(next - 1)}); err != nil {
			return err
		}
	}
	buf := make([]entry, 256)
	for {
		evs, wake, lost, _ := s.journal.read(next, buf)
		if lost {
			if !f.kinds {
				return toStatus(errors.Join(job.ErrExhausted, fmt.Errorf("watcher fell more than %d events behind; watch again", journalSize)))
			}
			next = s.journal.head()
			if err := stream.Send(&pb.JobEvent{Reset_: true, Cursor: s.journal.cursor(next - 1)}); err != nil {
				return err
			}
			continue
		}
		for _, e := range evs {
			next = e.seq + 1
			ev := s.eventOf(ctx, e, &f)
			if ev == nil {
				continue
			}
			ev.Cursor = s.journal.cursor(e.seq)
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
			}
		}
	}
}

// watchFilter is what a Watch selects.
type watchFilter struct {
	job, tenant, pipeline string
	state                 job.State // 0: any
	kinds                 bool      // worker and pipeline events too
	workers               bool      // worker events: kinds, no job or pipeline filter, and the right to see workers
}

// eventOf is the event e as the watcher of f sees it, or nil when f leaves
// it out (or the caller may not see it).
func (s *Server) eventOf(ctx context.Context, e entry, f *watchFilter) *pb.JobEvent {
	switch e.kind {
	case jobEvent:
		j := e.job
		if (f.job != "" && j.ID != f.job) || (f.tenant != "" && j.Spec.Tenant != f.tenant) ||
			(f.pipeline != "" && j.Spec.Pipeline != f.pipeline) || (f.state != 0 && j.State != f.state) || !sees(ctx, j.Spec.Tenant) {
			return nil
		}
		return &pb.JobEvent{Job: s.jobPB(j)}
	case workerEvent:
		if !f.workers {
			return nil
		}
		if w, ok := s.sched.Worker(e.id); ok {
			return &pb.JobEvent{Worker: workerPB(w)}
		}
		return &pb.JobEvent{Worker: &pb.Worker{Id: e.id}, WorkerRemoved: true}
	case pipelineEvent:
		if !f.kinds || f.job != "" || (f.pipeline != "" && e.id != f.pipeline) {
			return nil
		}
		st, err := s.sched.Pipeline(ctx, e.id)
		if err != nil || (f.tenant != "" && st.Pipeline.Tenant != f.tenant) || !sees(ctx, st.Pipeline.Tenant) {
			return nil
		}
		st.Jobs = nil
		return &pb.JobEvent{Pipeline: s.pipelinePB(st)}
	}
	return nil
}

// Logs streams an attempt's stored output from an offset. Attempt 0 means
// the job's current attempt; with follow it also moves on to the attempts
// of later retries, as a given attempt does with later_attempts (how a
// client resumes a broken follow). With follow the stream ends once the
// job is terminal and everything it wrote has been sent; its header goes
// out at once, so that a client knows the server took the request before
// the job prints anything.
func (js *jobService) Logs(req *pb.LogsRequest, stream pb.JobService_LogsServer) error {
	s := js.srv
	j, err := s.job(stream.Context(), req.GetId())
	if err != nil {
		return err
	}
	if req.GetAttempt() < 0 || int(req.GetAttempt()) > j.Attempt {
		return invalid("attempt", "%d must be between 1 and %d (0: the current one)", req.GetAttempt(), j.Attempt)
	}
	if req.GetOffset() < 0 {
		return invalid("offset", "must not be negative")
	}
	fixed := req.GetAttempt() != 0 && !req.GetLaterAttempts()
	attempt, offset := int(req.GetAttempt()), req.GetOffset()
	if attempt == 0 {
		attempt = j.Attempt
	}
	if _, ok := pb.LogStream_name[int32(req.GetStream())]; !ok {
		return invalid("stream", "%d is not a log stream", req.GetStream())
	}
	if req.GetStream() == pb.LogStream_LOG_STREAM_STDERR && !j.Spec.NoPTY {
		return toStatus(fmt.Errorf("job %s runs in a PTY, which merges stderr into stdout: its stderr is in its output "+
			"(hodei logs without --stderr); submit with --no-pty to keep them apart: %w", j.ID, job.ErrConflict))
	}
	logs := s.logsOf(req.GetStream())
	ctx := stream.Context()
	buf := make([]byte, logChunk)
	id := j.ID
	if !req.GetFollow() {
		_, err := s.sendLog(stream, logs, id, attempt, offset, buf)
		return err
	}
	release, err := s.following.acquire(ctx)
	if err != nil {
		return err
	}
	defer release()
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		changed, release := s.logSignals.wait(id)
		j, err := s.sched.Get(ctx, id)
		if err != nil {
			release()
			return toStatus(err) // deleted by retention meanwhile
		}
		n, err := s.sendLog(stream, logs, id, attempt, offset, buf)
		offset += n
		if err != nil {
			release()
			return err
		}
		// Everything written so far is sent. The attempt is over when the
		// job moved past it; its log is complete then, because a result is
		// recorded only after the whole log is stored.
		if j.Attempt == attempt && !j.State.Terminal() {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			release()
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		release()
		// Drain what arrived between the read above and the state check.
		n, err = s.sendLog(stream, logs, id, attempt, offset, buf)
		offset += n
		if err != nil {
			return err
		}
		if fixed || j.Attempt == attempt {
			return nil
		}
		attempt, offset = attempt+1, 0
	}
}

// sendLog sends the attempt's log from offset to its current end and
// returns how many bytes it sent.
func (s *Server) sendLog(stream pb.JobService_LogsServer, logs *store.Logs, id string, attempt int, offset int64, buf []byte) (int64, error) {
	size, err := logs.Size(id, attempt)
	if err != nil || size <= offset {
		return 0, toStatus(err)
	}
	f, err := logs.Open(id, attempt)
	if err != nil {
		return 0, toStatus(err)
	}
	defer f.Close()
	var sent int64
	for offset+sent < size {
		want := min(int64(len(buf)), size-offset-sent)
		n, err := f.ReadAt(buf[:want], offset+sent)
		if n > 0 {
			// Send encodes before it returns, so buf can be reused.
			if err := stream.Send(&pb.LogData{Attempt: int32(attempt), Offset: offset + sent, Data: buf[:n]}); err != nil {
				return sent, err
			}
			sent += int64(n)
		}
		if err != nil && err != io.EOF {
			return sent, toStatus(err)
		}
		if n == 0 {
			break
		}
	}
	return sent, nil
}
