package hodeipb

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
)

// Reasons of the google.rpc.ErrorInfo details the server adds to an error
// status, for a client to tell errors of the same code apart without
// reading their message. ErrorDomain is their domain.
const (
	ErrorDomain = "hodei.v1"
	// ReasonNoWorkerFits marks the InvalidArgument refusal of a submit
	// with require_fit whose spec no registered worker could take: its
	// values are each allowed, the cluster has no worker for them.
	ReasonNoWorkerFits = "NO_WORKER_FITS"
	// ReasonUnwritable: Unavailable because the server cannot write its
	// database (a full disk, an I/O error); the same call may succeed
	// once it recovers.
	ReasonUnwritable = "DATABASE_UNWRITABLE"
)

// HasReason reports whether err is a status with an ErrorInfo of this
// domain and reason.
func HasReason(err error, reason string) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain && info.GetReason() == reason {
			return true
		}
	}
	return false
}
