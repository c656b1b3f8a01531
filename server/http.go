package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
)

func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", s.requireHTTP(auth.Metrics,
		promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{Registry: s.metrics.reg})))
	return mux
}

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
