package server

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
)

// TestDiskFullStatus: a commit that found the server's disk full is
// Unavailable (the same request succeeds once the disk has room), says
// why in the system's words, and leaves out the server's paths.
func TestDiskFullStatus(t *testing.T) {
	cause := &os.PathError{Op: "write", Path: "/srv/hodei/hodei.db", Err: syscall.ENOSPC}
	for _, err := range []error{
		fmt.Errorf("commit: %w: %w", job.ErrUnwritable, cause),
		fmt.Errorf("commit: %w", cause),
	} {
		st := status.Convert(toStatus(err))
		if st.Code() != codes.Unavailable || strings.Contains(st.Message(), "/srv") ||
			!strings.Contains(st.Message(), "(no space left on device): retry when it recovers") {
			t.Errorf("toStatus(%v) = %v %q", err, st.Code(), st.Message())
		}
	}
	err := fmt.Errorf("commit: %w: %w", job.ErrUnwritable, syscall.EIO)
	if msg := status.Convert(toStatus(err)).Message(); msg != "the server cannot write its database (input/output error): retry when it recovers" {
		t.Errorf("toStatus(%v) = %q", err, msg)
	}
}

// TestStatusMessage: the words of a sentinel error, which only repeat the
// status code, are not part of the message people read.
func TestStatusMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
		want string
	}{
		{"NotFoundNamesObject", fmt.Errorf("job %s: %w", "01J", job.ErrNotFound), codes.NotFound, "job 01J not found"},
		{"NotFoundWrapped", fmt.Errorf("get: %w", fmt.Errorf("worker w-9: %w", job.ErrNotFound)), codes.NotFound, "get: worker w-9 not found"},
		{"NotFoundSaysWhy", job.UnknownTenant("x"), codes.NotFound,
			`tenant "x" does not exist; create it with "hodei tenants set x" or run the server with --auto-tenants`},
		{"NotFoundNeverJoined", fmt.Errorf("worker %q never joined: %w", "w", job.ErrNotFound), codes.NotFound, `worker "w" never joined`},
		{"Conflict", job.Conflict("01J", "already %s", "COMPLETED"), codes.FailedPrecondition, "job 01J: already COMPLETED"},
		{"ConflictFirst", fmt.Errorf("%w: tokens: the server runs with --insecure-no-auth", job.ErrConflict), codes.FailedPrecondition,
			"tokens: the server runs with --insecure-no-auth"},
		{"Exhausted", fmt.Errorf("tenant a has 5 queued jobs: %w", job.ErrExhausted), codes.ResourceExhausted, "tenant a has 5 queued jobs"},
		{"Closed", fmt.Errorf("store: %w", job.ErrClosed), codes.Unavailable, "store: closed"},
		{"SentinelAlone", job.ErrNotFound, codes.NotFound, "not found"},
		{"FieldError", job.Invalid("priority", "5000 must be between 0 and 1000"), codes.InvalidArgument, "priority: 5000 must be between 0 and 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := status.Convert(toStatus(tc.err))
			if st.Code() != tc.code || st.Message() != tc.want {
				t.Errorf("toStatus(%q) = %s %q, want %s %q", tc.err, st.Code(), st.Message(), tc.code, tc.want)
			}
		})
	}
}

// TestIDFieldMessages: a malformed ARRAY[INDEX] is told by its index, not
// as an id no job has; "an array id"; and a Resolve names its prefix
// (attack 11 #10).
func TestIDFieldMessages(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	for _, ref := range []string{"[5]", "01J[-1]", "01J[ 5]", "01J[99999999999999999999]"} {
		_, err := s.jobs.Get(ctx, &pb.GetJobRequest{Id: ref})
		wantInvalid(t, err, "id", "a task is ARRAY[INDEX], ARRAY the start of an array id and INDEX a whole number, 0 or more")
	}
	_, err := s.jobs.Resolve(ctx, &pb.ResolveRequest{Kind: pb.IdKind_ID_KIND_ARRAY, Prefix: "NOPE"})
	wantInvalid(t, err, "prefix", `"NOPE" is not an array id or the start of one`)
}
