package server

// Errors of the HTTP API: one JSON shape, pb.HttpError {code, status,
// message, field}, with the HTTP status of its gRPC code. This is the one
// place that maps a gRPC status to HTTP.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/hodei-jobs/hodei/proto"
)

// httpStatus is the HTTP status of a gRPC code: grpc-gateway's mapping,
// except that FailedPrecondition is 412 rather than 400, so that a client
// tells "not in this state" (retry later, or never) from a bad request.
func httpStatus(c codes.Code) int {
	if c == codes.FailedPrecondition {
		return http.StatusPreconditionFailed
	}
	return runtime.HTTPStatusFromCode(c)
}

// httpError is an error answer of the HTTP API: its status and body.
type httpError struct {
	status int
	body   *pb.HttpError
}

// errorOf converts a gRPC status error to an HTTP error; its field is the
// first field violation of the status's google.rpc.BadRequest detail.
func errorOf(err error) httpError {
	var hse *runtime.HTTPStatusError
	if errors.As(err, &hse) {
		st := status.Convert(hse.Err)
		return httpError{status: hse.HTTPStatus, body: &pb.HttpError{
			Code: int32(st.Code()), Status: code.Code_name[int32(st.Code())], Message: st.Message()}}
	}
	st := status.Convert(err)
	e := &pb.HttpError{Code: int32(st.Code()), Status: code.Code_name[int32(st.Code())], Message: st.Message()}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			e.Field = br.GetFieldViolations()[0].GetField()
			break
		}
	}
	return httpError{status: httpStatus(st.Code()), body: e}
}

// badRequest is a 400 InvalidArgument naming field ("" for none).
func badRequest(field, msg string) httpError {
	return httpError{status: http.StatusBadRequest, body: &pb.HttpError{
		Code: int32(codes.InvalidArgument), Status: code.Code_name[int32(codes.InvalidArgument)], Message: msg, Field: field}}
}

// queryError is the answer to a query that strictQuery refused.
func queryError(err error) httpError {
	if fe, ok := err.(*fieldError); ok {
		return badRequest(fe.field, fe.msg)
	}
	return badRequest("", err.Error())
}

// errorJSON marshals every field of an error, empty ones too, so that a
// client finds the same four keys in each.
var errorJSON = protojson.MarshalOptions{EmitUnpopulated: true}

// writeHTTPError writes e as the answer.
func writeHTTPError(w http.ResponseWriter, e httpError) {
	b, err := errorJSON.Marshal(e.body)
	if err != nil { // an HttpError always marshals; say so plainly if not
		http.Error(w, e.body.GetMessage(), e.status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="hodei"`)
	}
	w.WriteHeader(e.status)
	w.Write(append(b, '\n'))
}

// tooLarge answers a body over maxRESTBody (size -1: not known in advance).
func tooLarge(w http.ResponseWriter, size int64) {
	msg := fmt.Sprintf("the request body is larger than %d bytes, the most the server takes", maxRESTBody)
	if size >= 0 {
		msg = fmt.Sprintf("the request body has %d bytes; the server takes at most %d", size, maxRESTBody)
	}
	writeHTTPError(w, httpError{status: http.StatusRequestEntityTooLarge, body: &pb.HttpError{
		Code: int32(codes.ResourceExhausted), Status: code.Code_name[int32(codes.ResourceExhausted)], Message: msg}})
}

// restError is the gateway's error handler: every error of a /v1/ call,
// from the server's status or from the gateway's decoding of the request.
func restError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	method, _ := runtime.RPCMethod(ctx)
	body, _ := r.Context().Value(restBodyKey{}).([]byte)
	writeHTTPError(w, restField(errorOf(err), methodInput(method), body, r.URL.Query(), methodName(method)))
}

// routingError answers a request that matches no route: 404 for an
// unknown path, 405 for a known path with another method, with the
// methods it takes in Allow (RFC 9110). The 405's gRPC code is
// Unimplemented, as grpc-gateway's own: the call the client asked for
// does not exist, which is what UNIMPLEMENTED means to a gRPC client.
func (rs *rest) routingError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, st int) {
	path := strings.ToValidUTF8(r.URL.Path, "?")
	switch st {
	case http.StatusNotFound:
		writeHTTPError(w, httpError{status: st, body: &pb.HttpError{Code: int32(codes.NotFound), Status: code.Code_name[int32(codes.NotFound)],
			Message: fmt.Sprintf("no route %s %s: see /openapi.json for the routes", r.Method, path)}})
	case http.StatusMethodNotAllowed:
		allow := rs.allowed(r)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeHTTPError(w, httpError{status: st, body: &pb.HttpError{Code: int32(codes.Unimplemented), Status: code.Code_name[int32(codes.Unimplemented)],
			Message: fmt.Sprintf("%s is not allowed on %s; it takes %s (see /openapi.json)", r.Method, path, strings.Join(allow, ", "))}})
	default:
		writeHTTPError(w, badRequest("", fmt.Sprintf("%s %s: %s", r.Method, path, http.StatusText(st))))
	}
}

// allowed lists the methods the gateway takes on r's path, as its own
// routing finds them (the probe's handlers call nothing).
func (rs *rest) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}, Body: http.NoBody}
		probe = probe.WithContext(r.Context())
		var st statusOnly
		rs.probe.ServeHTTP(&st, probe)
		if st.code == http.StatusNoContent {
			out = append(out, m)
		}
	}
	return out
}

// statusOnly is a ResponseWriter that keeps only the status.
type statusOnly struct {
	code int
	h    http.Header
}

func (s *statusOnly) Header() http.Header {
	if s.h == nil {
		s.h = http.Header{}
	}
	return s.h
}
func (s *statusOnly) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusOnly) WriteHeader(code int)        { s.code = code }
