package cli

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
// flag the user typed.
type fieldFlagError struct {
	msg string
	err error // the server's answer
}

func (e *fieldFlagError) Error() string { return e.msg }
func (e *fieldFlagError) Unwrap() error { return e.err }

// named returns err, an answer of the server, with the field it names
// told as the flag that set it: "--memory: -5 must be between 0 and …"
// rather than "resources.memory_mib: …". Other errors pass unchanged.
func (m flagsOfFields) named(err error) error {
	var se grpcStatusError
	if !errors.As(err, &se) || se.GRPCStatus().Code() != codes.InvalidArgument {
		return err
	}
	for _, v := range fieldViolations(se.GRPCStatus()) {
		if flag, ok := m.flag(v.GetField()); ok {
			return &fieldFlagError{msg: fmt.Sprintf("%s: %s", flag, v.GetDescription()), err: err}
		}
	}
	return err
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
