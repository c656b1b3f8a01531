package server

import (
	"context"
	"errors"
	"strings"
	"syscall"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/store"
)

// toStatus maps a domain error to a gRPC status; the message is the
// error's own text, which names the field or object at fault. A
// *job.FieldError, or a *job.BatchError naming one spec of a batch, also
// travels as a google.rpc.BadRequest detail with the field and the rule,
// so that clients need not parse the message to find the field.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, job.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, job.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, job.ErrConflict):
		code = codes.FailedPrecondition
	case errors.Is(err, job.ErrExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, job.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, job.ErrUnwritable):
		// The server's disk, not the request: said without its paths.
		// Unavailable, since the same request succeeds once it recovers.
		return withReason(status.Newf(codes.Unavailable, "the server cannot write its database (%s): retry when it recovers", store.Cause(err)),
			pb.ReasonUnwritable)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return status.Errorf(codes.Unavailable, "the server cannot write to its data disk (%s): retry when it recovers", store.Cause(err))
	}
	st := status.New(code, statusMessage(err))
	if fe, ok := errors.AsType[*job.FieldError](err); ok {
		return withField(st, fe.Field, fe.Rule)
	}
	if be, ok := errors.AsType[*job.BatchError](err); ok {
		return withField(st, job.BatchField(be.Index, ""), be.Err.Error())
	}
	return st.Err()
}

// sentinels are the domain's sentinel errors whose own words ("not
// found", "conflict") only repeat the status code. ErrClosed's "closed"
// says more than Unavailable does, and stays.
var sentinels = []error{job.ErrNotFound, job.ErrConflict, job.ErrInvalid, job.ErrExhausted}

// statusMessage is err's text as a person reads it: a sentinel's words
// at its end (or start) are dropped, since the status code says them
// already, except that a name left alone ("job 01J…: not found") reads
// "job 01J… not found". The text is the same for every error of the same
// words, so that an object hidden from the caller reads as one missing.
func statusMessage(err error) string {
	msg := err.Error()
	for _, s := range sentinels {
		if !errors.Is(err, s) {
			continue
		}
		if rest, ok := strings.CutSuffix(msg, ": "+s.Error()); ok && rest != "" {
			if s == job.ErrNotFound && namesOnly(rest) {
				return rest + " not found"
			}
			return rest
		}
		if rest, ok := strings.CutPrefix(msg, s.Error()+": "); ok && rest != "" {
			return rest
		}
	}
	return msg
}

// namesOnly reports whether the last part of msg names an object ("job
// 01J…", "tenant \"x\"") rather than saying what is wrong with it.
func namesOnly(msg string) bool {
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return !strings.ContainsAny(msg, ";,") && !strings.Contains(msg, " not ") && !strings.Contains(msg, " never ") &&
		!strings.Contains(msg, " no ")
}

// withField returns st with a BadRequest detail naming field and what is
// wrong with it.
func withField(st *status.Status, field, rule string) error {
	d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: field, Description: rule},
	}})
	if err != nil {
		return st.Err() // the detail could not be encoded; the message still names the field
	}
	return d.Err()
}

// noFit is the status of a require_fit refusal, err from
// cluster.FitError (maybe inside a batch): toStatus's, with an ErrorInfo
// that tells it from a refused value.
func noFit(err error) error {
	return withReason(status.Convert(toStatus(err)), pb.ReasonNoWorkerFits)
}

// withReason is st with an ErrorInfo of reason (a pb.Reason constant),
// or st alone if the detail cannot be added.
func withReason(st *status.Status, reason string) error {
	d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: pb.ErrorDomain})
	if err != nil {
		return st.Err()
	}
	return d.Err()
}

// invalid is a convenience for request checks in handlers.
func invalid(field, format string, args ...any) error {
	return toStatus(job.Invalid(field, format, args...))
}
