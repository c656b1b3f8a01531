package cli

import (
	"errors"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// flagsOfFields maps the fields the server's rules name (the field of the
// google.rpc.BadRequest detail of an InvalidArgument answer) to what the
// user typed to set them: a flag, or an argument in capitals.
type flagsOfFields map[string]string

// specFlagsOf names the fields of a job spec as submit's and run's flags
// and arguments.
var specFlagsOf = flagsOfFields{
	"name": "--name", "tenant": "--tenant", "priority": "--priority", "deadline": "--deadline",
	"timeout": "--timeout", "retries": "--retries", "backoff": "--backoff", "preemptible": "--preemptible",
	"labels": "--label", "env": "--env", "secret_env": "--secret-env", "selector": "--selector",
	"resources.cpu_millis": "--cpu", "resources.memory_mib": "--memory", "resources.slots": "--slots",
	"after": "--after", "workdir": "--workdir", "script": "--script", "command": "CMD", "array": "--array",
	"require_fit": "--require-fit",
}

// tenantFlagsOf names the fields of `tenants set`'s rules as its flags.
var tenantFlagsOf = flagsOfFields{
	"name": "NAME", "weight": "--weight", "max_queued": "--max-queued", "max_running": "--max-running",
	"max_running.slots": "--max-running", "max_running.cpu_millis": "--cpu", "max_running.memory_mib": "--memory",
	"cpu": "--cpu", "memory": "--memory", "burst": "--burst", "burst_for": "--burst-for", "burst_for_ms": "--burst-for",
	"cooldown": "--cooldown", "cooldown_ms": "--cooldown", "preemptible": "--preemptible", "run_as": "--run-as",
}

// tokenFlagsOf names the fields of `token create`'s rules as its flags.
var tokenFlagsOf = flagsOfFields{"role": "--role", "tenants": "--tenant", "ttl_ms": "--ttl", "name": "--name"}

// listFlagsOf names the fields of a job listing (`jobs ls`) as its flags.
var listFlagsOf = flagsOfFields{
	"name": "--name", "state": "--state", "tenant": "--tenant", "labels": "--label", "array": "--array",
	"pipeline": "--pipeline", "page_size": "--limit", "created_since_unix_nano": "--since",
}

// jobFlagsOf names the fields of a call about one job (`jobs get`,
// `jobs cancel`, `logs`, `attach`) as their flags and argument.
var jobFlagsOf = flagsOfFields{"id": "ID", "job_id": "ID", "attempt": "--attempt", "reason": "--reason"}

// flag returns what the user typed for field: the flag of the field
// itself, or of the map or list it is in ("secret_env.TOKEN" is
// "--secret-env TOKEN", "after[2]" is "--after"); ok is false for a field
// the command has no flag for.
func (m flagsOfFields) flag(field string) (name string, ok bool) {
	// A field of the request rather than of its spec (the client's own
	// check of UTF-8 names those): "spec.env" is "env".
	field = strings.TrimPrefix(field, "spec.")
	if f, ok := m[field]; ok {
		return f, true
	}
	for i := len(field) - 1; i > 0; i-- {
		if field[i] != '.' && field[i] != '[' {
			continue
		}
		f, ok := m[field[:i]]
		if !ok {
			continue
		}
		if field[i] == '.' {
			return f + " " + field[i+1:], true
		}
		if idx := strings.TrimSuffix(field[i+1:], "]"); f == "CMD" && idx != "0" {
			return "argument " + idx + " of CMD", true // argv[0] is CMD itself
		}
		return f, true
	}
	return "", false
}

// fieldFlagError is an error of the server about a field, told with the
// flag the user typed, that is no mistake in the command line (exit 1):
// a --require-fit refusal.
type fieldFlagError struct {
	msg string
	err error // the server's answer
}

func (e *fieldFlagError) Error() string { return e.msg }
func (e *fieldFlagError) Unwrap() error { return e.err }

// named returns err, an answer of the server, with the field it names
// told as the flag that set it: "--memory: -5 must be between 0 and …"
// rather than "resources.memory_mib: …". A value the server refuses is a
// usage error of c's command (exit 2, with the pointer to --help), as the
// CLI's own checks of flag values are; a --require-fit refusal is not.
// Other errors pass unchanged.
func (m flagsOfFields) named(c *ucli.Context, err error) error {
	var se grpcStatusError
	if !errors.As(err, &se) || se.GRPCStatus().Code() != codes.InvalidArgument {
		return err
	}
	st := se.GRPCStatus()
	for _, v := range fieldViolations(st) {
		flag, ok := m.flag(v.GetField())
		if !ok {
			continue
		}
		msg := fmt.Sprintf("%s: %s", flag, v.GetDescription())
		if noWorkerFits(st) {
			return &fieldFlagError{msg: msg, err: err}
		}
		u := usagef(c, "%s", msg).(*usageError)
		u.err = err
		return u
	}
	return err
}

// noWorkerFits reports whether st is a --require-fit refusal: a spec no
// registered worker could take, which is no mistake in its values.
func noWorkerFits(st *status.Status) bool {
	return hodeipb.HasReason(st.Err(), hodeipb.ReasonNoWorkerFits)
}

// fieldViolations returns the fields st's google.rpc.BadRequest details
// name, in order.
func fieldViolations(st *status.Status) []*errdetails.BadRequest_FieldViolation {
	var vs []*errdetails.BadRequest_FieldViolation
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			vs = append(vs, br.GetFieldViolations()...)
		}
	}
	return vs
}
