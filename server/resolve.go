package server

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// Ids people type. Every call that takes the id of a job, an array, a
// pipeline or a worker accepts any unique prefix of one, in any case, and
// resolves it here, on the server, so that every client has it; Resolve
// lets a client learn the whole id once (the CLI does, so that a command
// that makes several calls makes them about one object).

// resolve returns the whole id ref names: ref itself, in upper case, when
// it is a whole job, array or pipeline id (the caller's lookup then says
// whether it exists), or else the one id of kind it starts, among what
// the caller sees. A worker id that starts none is returned as typed, for
// the handler to say it is not found. field names ref in errors.
func (s *Server) resolve(ctx context.Context, kind job.IDKind, field, ref string) (string, error) {
	if kind != job.KindWorker {
		if up := strings.ToUpper(ref); job.ValidID(up) {
			return up, nil
		}
	}
	id, err := s.sched.Resolve(ctx, kind, field, ref, callerTenants(ctx))
	if kind == job.KindWorker && errors.Is(err, job.ErrNotFound) {
		return ref, nil
	}
	if err != nil {
		return "", toStatus(err)
	}
	return id, nil
}

// cutTaskRef reads ARRAY[INDEX], the way people name a task of an array,
// where ARRAY may be any unique prefix of the array's id.
func cutTaskRef(ref string) (array string, index int, ok bool) {
	array, rest, found := strings.Cut(ref, "[")
	idx, closed := strings.CutSuffix(rest, "]")
	if !found || !closed || array == "" {
		return "", 0, false
	}
	index, err := strconv.Atoi(idx)
	if err != nil || index < 0 {
		return "", 0, false
	}
	return array, index, true
}

// isTaskRef reports whether ref is shaped as ARRAY[INDEX], maybe with an
// index cutTaskRef refuses: no job id has a '['.
func isTaskRef(ref string) bool {
	return strings.Contains(ref, "[") && strings.HasSuffix(ref, "]")
}

func (js *jobService) Resolve(ctx context.Context, req *pb.ResolveRequest) (*pb.ResolveResponse, error) {
	kind := job.IDKind(req.GetKind())
	switch kind {
	case job.KindJob, job.KindArray, job.KindPipeline:
	case job.KindWorker:
		if id := auth.FromContext(ctx); id != nil {
			if err := id.Allow(auth.ManageWorkers); err != nil {
				return nil, denied("resolve a worker id: %s", err)
			}
		}
	default:
		return nil, invalid("kind", "%d is not a kind of id (job, array, pipeline or worker)", req.GetKind())
	}
	id, err := js.srv.sched.Resolve(ctx, kind, "prefix", req.GetPrefix(), callerTenants(ctx))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ResolveResponse{Id: id}, nil
}
