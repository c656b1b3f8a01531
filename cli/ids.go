package cli

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/client"
	"github.com/hodei-jobs/hodei/job"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// Ids on the command line. Every command that takes the id of a job, an
// array, a pipeline or a worker accepts any unique prefix of it, in any
// case: it resolves the argument once, on the server, and works with the
// whole id from then on, so that its later calls (a follow, a reconnect)
// name the same object. A whole job, array or pipeline id costs no call.

// resolveJobID is resolveID for a job: also a task of an array, as
// ARRAY[INDEX] where ARRAY is its array's id or a prefix of it.
func resolveJobID(ctx context.Context, cl *client.Client, arg string) (string, error) {
	if array, index, ok := strings.Cut(arg, "["); ok && strings.HasSuffix(index, "]") {
		id, err := resolveID(ctx, cl, hodeipb.IdKind_ID_KIND_ARRAY, array)
		if err != nil {
			return "", err
		}
		return id + "[" + index, nil
	}
	return resolveID(ctx, cl, hodeipb.IdKind_ID_KIND_JOB, arg)
}

// resolveID returns the whole id of the object of kind that arg names:
// arg itself in upper case when it is a whole job, array or pipeline id,
// else the one id the server finds that starts with it. The server's
// error for no match (NotFound) or several (InvalidArgument, listing
// them) is returned as it is.
func resolveID(ctx context.Context, cl *client.Client, kind hodeipb.IdKind, arg string) (string, error) {
	if kind != hodeipb.IdKind_ID_KIND_WORKER {
		if up := strings.ToUpper(arg); job.ValidID(up) {
			return up, nil
		}
	}
	id, err := cl.Resolve(ctx, kind, arg)
	if status.Code(err) == codes.Unimplemented {
		return arg, nil // a server from before prefixes: it takes whole ids
	}
	return id, err
}
