package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
)

// toStatus maps a domain error to a gRPC status; the message is the
// error's own text, which names the field or object at fault.
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
	}
	return status.Error(code, err.Error())
}

// invalid is a convenience for request checks in handlers.
func invalid(field, format string, args ...any) error {
	return toStatus(job.Invalid(field, format, args...))
}
