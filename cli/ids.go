package cli

import (
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"
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
// ARRAY[INDEX] where ARRAY is its array's id or a prefix of it. what
// names arg in errors as the user typed it ("ID").
func resolveJobID(c *ucli.Context, cl *client.Client, arg, what string) (string, error) {
	if array, index, ok := strings.Cut(arg, "["); ok && strings.HasSuffix(index, "]") {
		n := strings.TrimSuffix(index, "]")
		if array == "" {
			return "", usagef(c, "%s: %q names no array: a task is ARRAY[INDEX], ARRAY the start of an array id", what, arg)
		}
		if i, err := strconv.Atoi(n); err != nil || i < 0 || n != strconv.Itoa(i) {
			return "", usagef(c, "%s: %q: the INDEX of ARRAY[INDEX] must be a whole number, 0 or more", what, arg)
		}
		id, err := resolveID(c, cl, hodeipb.IdKind_ID_KIND_ARRAY, array, what)
		if err != nil {
			return "", err
		}
		return id + "[" + index, nil
	}
	return resolveID(c, cl, hodeipb.IdKind_ID_KIND_JOB, arg, what)
}

// resolveID returns the whole id of the object of kind that arg names:
// arg itself in upper case when it is a whole job, array or pipeline id,
// else the one id the server finds that starts with it. The server's
// error for no match (NotFound) is returned as it is; for an arg that
// starts no id or several (InvalidArgument, listing them) it is a usage
// error that names arg as what, the flag or argument the user typed
// ("--array", "ID").
func resolveID(c *ucli.Context, cl *client.Client, kind hodeipb.IdKind, arg, what string) (string, error) {
	if kind != hodeipb.IdKind_ID_KIND_WORKER {
		if up := strings.ToUpper(arg); job.ValidID(up) {
			return up, nil
		}
	}
	id, err := cl.Resolve(c.Context, kind, arg)
	if status.Code(err) == codes.Unimplemented {
		return arg, nil // a server from before prefixes: it takes whole ids
	}
	if err != nil {
		return "", flagsOfFields{"prefix": what}.named(c, err)
	}
	return id, nil
}
