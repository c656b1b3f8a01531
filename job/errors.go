package job

import (
	"errors"
	"fmt"
	"log/slog"
)

// Sentinel errors. Every error the domain, the store or the scheduler returns
// wraps one of these, and each transport maps them to its own codes in one
// place (gRPC status codes in server/, exit codes in cli/).
var (
	// ErrInvalid: the request is malformed; the message names the field.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound: the named job, worker or tenant does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-swap lost: the object is not in the state
	// the caller expected (a late or duplicate report, a double cancel).
	ErrConflict = errors.New("conflict")
	// ErrExhausted: a limit was reached (quota, payload size).
	ErrExhausted = errors.New("resource exhausted")
	// ErrClosed: the component was stopped.
	ErrClosed = errors.New("closed")
	// ErrUnwritable: the store could not commit (a full disk, an I/O
	// error); nothing of the request was stored, and the same request may
	// succeed once the store commits again.
	ErrUnwritable = errors.New("cannot write the database")
)

// Quietly returns an error with the message of format, wrapping sentinel
// (one of the above) without its words: errors.Is still finds it, for the
// codes, but the message, which says it all to a person, is not followed by
// ": conflict".
func Quietly(sentinel error, format string, args ...any) error {
	return &quietError{msg: fmt.Sprintf(format, args...), err: sentinel}
}

type quietError struct {
	msg string
	err error
}

func (e *quietError) Error() string { return e.msg }

// Unwrap returns the sentinel.
func (e *quietError) Unwrap() error { return e.err }

// FieldError says which field of a request broke which rule. It wraps
// ErrInvalid, so errors.Is(err, ErrInvalid) holds for it.
type FieldError struct {
	Field string // dotted path, e.g. "spec.timeout"
	Rule  string // what is allowed, e.g. "must be between 0 and 1000"
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Rule }

// Unwrap makes a FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Invalid returns a *FieldError for field with a formatted rule.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Rule: fmt.Sprintf(format, args...)}
}

// Conflict returns an error wrapping ErrConflict for job id.
func Conflict(id string, format string, args ...any) error {
	return fmt.Errorf("job %s: %s: %w", id, fmt.Sprintf(format, args...), ErrConflict)
}

// UnknownDependency is the error for a dependency that names no job: the
// same text whether the job never existed or belongs to a tenant the
// caller may not see, so that it tells nothing about other tenants.
func UnknownDependency(id string) error {
	return Invalid("after", "%q is not a known job", id)
}

// StoreErrLevel is the level to log a failed store write at: debug when
// the store cannot write its database (ErrUnwritable: the store logs its
// failing episode once itself, and /readyz says so), error otherwise.
func StoreErrLevel(err error) slog.Level {
	if errors.Is(err, ErrUnwritable) {
		return slog.LevelDebug
	}
	return slog.LevelError
}
