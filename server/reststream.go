package server

// The REST API's streams, which grpc-gateway would answer as JSON lines:
// hand-written handlers that call the same gRPC streams over the
// gateway's in-process connection (so the same interceptors apply) and
// write them in a form HTTP clients read well.

import (
	"context"
	"errors"
	"io"
	"net/http"

	"google.golang.org/grpc/metadata"

	pb "github.com/hodei-jobs/hodei/proto"
)

// restStreams adds the stream routes to mux. Each is also annotated in
// hodei.proto, so that /openapi.json describes it.
func (s *Server) restStreams(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/snapshot", s.rest.snapshot)
	mux.HandleFunc("GET /v1/events", s.rest.events)
	mux.HandleFunc("GET /v1/jobs/{id}/logs", s.rest.logs)
}

// outgoing is the context of a gRPC call made for the HTTP request r: its
// authorization, and the client's address for the audit, as the gateway
// sends them.
func (r *rest) outgoing(req *http.Request) context.Context {
	md := metadata.Pairs(httpPeerKey, req.RemoteAddr)
	for _, v := range req.Header.Values("Authorization") {
		md.Append("authorization", v)
	}
	return metadata.NewOutgoingContext(req.Context(), md)
}

// snapshot streams a consistent copy of the database file as raw bytes
// (AdminService.Snapshot). An error before the first byte is a JSON
// error; one after it cuts the response, so that a client never takes a
// short copy for a whole one.
func (r *rest) snapshot(w http.ResponseWriter, req *http.Request) {
	sc, release, err := r.streams.acquire()
	if err != nil {
		writeHTTPError(w, errorOf(err))
		return
	}
	defer release()
	ctx, cancel := context.WithCancel(r.outgoing(req))
	defer cancel()
	stream, err := sc.adm.Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		writeHTTPError(w, errorOf(err))
		return
	}
	first, err := stream.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		writeHTTPError(w, errorOf(err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="hodei.db"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	for chunk := first; chunk != nil; {
		if _, err := w.Write(chunk.GetData()); err != nil {
			return // the client left
		}
		if chunk, err = stream.Recv(); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			panic(http.ErrAbortHandler) // cut, not ended: the copy is short
		}
	}
}
