package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
)

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.requireHTTP(auth.Metrics,
		promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg})))
	// The API's description is open, as gRPC reflection describes the
	// API to anyone who may call it; it holds no data.
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(pb.OpenAPI)
	})
	if s.rest != nil {
		mux.Handle("/v1/", s.rest.handler())
		s.restStreams(mux)
	}
	return mux
}

// readyz answers 200 "ready" while the server serves and its store
// commits, and 503 with the reason otherwise: while it shuts down, and
// while the store cannot write its database (then a call probes it with
// an empty commit, at most once a second, so that the server turns ready
// again once the disk has room, with or without other writes). /healthz,
// by contrast, only says the process answers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.stopping.Load() {
		http.Error(w, "not ready: the server is shutting down", http.StatusServiceUnavailable)
		return
	}
	if now, last, h := time.Now().UnixNano(), s.probed.Load(), s.store.Health(); h.Err != nil &&
		now-max(last, h.Since.UnixNano()) >= int64(readyProbeEvery) && s.probed.CompareAndSwap(last, now) {
		// At most one probe a readyProbeEvery, whoever asks: /readyz is
		// open, and each probe is a commit. Not in the episode's first
		// readyProbeEvery either: a probe at once, before the writers'
		// next commits, could fit in the pages the refused commit left
		// free and end the episode while the disk is still full (seen
		// once /readyz on loopback answered without a TLS handshake).
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		_ = s.store.Probe(ctx) // its result is the store's health, read below
		cancel()
	}
	if h := s.store.Health(); h.Err != nil {
		http.Error(w, fmt.Sprintf("not ready: the server cannot write its database (%s) since %s; %d commits failed",
			store.Cause(h.Err), h.Since.UTC().Format(time.RFC3339), h.Failed), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ready\n"))
}

// readyProbeEvery is how often /readyz may probe a failing store with an
// empty commit.
const readyProbeEvery = time.Second

// requireHTTP is the HTTP listener's authentication: the same bearer
// tokens as gRPC, the same roles. 401 without a valid token, 403 when the
// token may not do p; both are audited.
func (s *Server) requireHTTP(p auth.Permission, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.gate.insecure {
			next.ServeHTTP(w, r)
			return
		}
		action := r.Method + " " + r.URL.Path
		text, err := parseBearer(r.Header.Get("Authorization"))
		var id *auth.Identity
		if err == nil {
			id, err = s.gate.authorize(text, p, action)
		}
		if err != nil {
			s.auditCall(r.Context(), id, action, nil, nil, err)
			code := http.StatusForbidden
			if status.Code(err) == codes.Unauthenticated {
				code = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", `Bearer realm="hodei"`)
			}
			http.Error(w, status.Convert(err).Message(), code)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), id)))
	})
}
