package server

import (
	"context"
	"fmt"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// adminService implements AdminService.
type adminService struct {
	pb.UnimplementedAdminServiceServer
	srv *Server
}

// ListWorkers answers one worker (req.id), a page of workers in id order
// (req.page_size), or every worker (page_size 0, as the CLI lists them).
func (as *adminService) ListWorkers(ctx context.Context, req *pb.ListWorkersRequest) (*pb.ListWorkersResponse, error) {
	var (
		ws   []cluster.WorkerInfo
		next string
	)
	size, token := int(req.GetPageSize()), req.GetPageToken()
	if req.GetCountsOnly() {
		if req.GetId() != "" || size != 0 || token != "" {
			return nil, invalid("counts_only", "is for counting every worker: give it without id, page_size or page_token")
		}
		c := as.srv.sched.CountWorkers()
		return &pb.ListWorkersResponse{Counts: &pb.WorkerCounts{Ready: int32(c.Ready), Draining: int32(c.Draining),
			Leaving: int32(c.Leaving), Down: int32(c.Down), Unknown: int32(c.Unknown), Slots: c.Slots, SlotsUsed: c.SlotsUsed}}, nil
	}
	switch id := req.GetId(); {
	case size < 0 || size > cluster.MaxWorkerPage:
		return nil, invalid("page_size", "%d must be between 0 and %d (0: every worker)", size, cluster.MaxWorkerPage)
	case token != "" && (size == 0 || id != ""):
		return nil, invalid("page_token", "is for paging: give it with page_size and without id")
	case id != "":
		w, ok := as.srv.sched.Worker(id)
		if !ok {
			return nil, toStatus(fmt.Errorf("worker %s: %w", id, job.ErrNotFound))
		}
		ws = []cluster.WorkerInfo{w}
	case size > 0:
		ws, next = as.srv.sched.WorkerPage(token, size)
	default:
		ws = as.srv.sched.Workers()
	}
	resp := &pb.ListWorkersResponse{NextPageToken: next, Workers: make([]*pb.Worker, len(ws))}
	for i, w := range ws {
		resp.Workers[i] = workerPB(w)
		if b, ok := as.srv.gate.agents.Load(w.Worker.ID); ok && b.Revoked() {
			resp.Workers[i].Revoked = true
		}
	}
	return resp, nil
}

func (as *adminService) DrainWorker(ctx context.Context, req *pb.DrainWorkerRequest) (*pb.Worker, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "is required")
	}
	id, err := as.srv.resolve(ctx, job.KindWorker, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	w, err := as.srv.sched.Drain(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return workerPB(w), nil
}

// UndrainWorker undoes DrainWorker: the worker takes new jobs again.
func (as *adminService) UndrainWorker(ctx context.Context, req *pb.UndrainWorkerRequest) (*pb.Worker, error) {
	if req.GetId() == "" {
		return nil, invalid("id", "is required")
	}
	id, err := as.srv.resolve(ctx, job.KindWorker, "id", req.GetId())
	if err != nil {
		return nil, err
	}
	w, err := as.srv.sched.Undrain(ctx, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return workerPB(w), nil
}

func (as *adminService) Snapshot(_ *pb.SnapshotRequest, stream pb.AdminService_SnapshotServer) error {
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&pb.SnapshotChunk{Data: b}) }}
	if _, err := as.srv.store.Snapshot(stream.Context(), w); err != nil {
		return toStatus(err)
	}
	return w.flush()
}

// chunkWriter turns a byte stream into messages of at most logChunk bytes.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		room := logChunk - len(c.buf)
		take := min(room, len(p))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == logChunk {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = c.buf[:0]
	return err
}

func workerPB(w cluster.WorkerInfo) *pb.Worker {
	p := pb.FromWorker(w.Worker)
	p.State = pb.WorkerState(w.State) // the wire numbers equal job.WorkerState
	p.Allocated = pb.FromResources(w.Allocated)
	if !w.LastSeen.IsZero() {
		p.LastHeartbeatUnixNano = w.LastSeen.UnixNano()
	}
	p.CpuPercent = w.Stats.CPUPercent
	p.MemoryUsedMib = w.Stats.MemoryUsedMiB
	p.Load1 = w.Stats.Load1
	p.Running = w.Running
	p.Leaving = w.Leaving
	return p
}
