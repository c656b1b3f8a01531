package job

import (
	"errors"
	"strconv"
	"strings"
)

// Limits of one batch submit (SubmitBatch).
const (
	// MaxBatch bounds the specs of one batch. A client with more splits
	// them into several batches, each all or nothing.
	MaxBatch = 10_000
	// MaxBatchBytes bounds the specs of one batch summed, as Validate
	// measures them (the strings they hold). It stays below the server's
	// 4 MiB request limit by more than the encoding of MaxBatch specs adds,
	// so a client that keeps the encoded specs of each batch within it
	// never meets that limit.
	MaxBatchBytes = 3 << 20
)

// CheckBatchLen refuses a batch of n specs that is empty or larger than
// MaxBatch, with a *FieldError on "specs".
func CheckBatchLen(n int) error {
	switch {
	case n == 0:
		return Invalid("specs", "must not be empty: give at least one job spec")
	case n > MaxBatch:
		return Invalid("specs", "%d specs are more than the limit of %d per call; split them into several calls", n, MaxBatch)
	}
	return nil
}

// BatchTooBig is the error, a *FieldError on "specs", of a batch whose
// specs pass MaxBatchBytes together (their Size) at spec i.
func BatchTooBig(i int) error {
	return Invalid("specs", "hold more than %d MiB together (at spec %d); split them into several calls", MaxBatchBytes>>20, i)
}

// BatchError is the error of one spec of a batch when it is not a
// *FieldError (an unknown tenant, say): Index is the spec's position, and
// Err the error, which it wraps, so that errors.Is sees Err's sentinel.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string { return BatchField(e.Index, "") + ": " + e.Err.Error() }

// Unwrap returns Err.
func (e *BatchError) Unwrap() error { return e.Err }

// InBatch returns err as the error of spec i of a batch: a *FieldError
// (found with errors.As) becomes one whose field is under "specs[i]"
// ("specs[3].command"); any other error becomes a *BatchError. nil stays nil.
func InBatch(i int, err error) error {
	if err == nil {
		return nil
	}
	if fe, ok := errors.AsType[*FieldError](err); ok {
		return &FieldError{Field: BatchField(i, fe.Field), Rule: fe.Rule}
	}
	return &BatchError{Index: i, Err: err}
}

// BatchField names field of spec i of a batch: "specs[3].command", or
// "specs[3]" for an empty field.
func BatchField(i int, field string) string {
	f := "specs[" + strconv.Itoa(i) + "]"
	if field != "" {
		f += "." + field
	}
	return f
}

// ParseBatchField is the inverse of BatchField: it splits "specs[3].command"
// into 3 and "command" ("" for "specs[3]"); ok is false for a field that
// is not under one spec of a batch.
func ParseBatchField(field string) (i int, rest string, ok bool) {
	s, ok := strings.CutPrefix(field, "specs[")
	if !ok {
		return 0, "", false
	}
	num, rest, ok := strings.Cut(s, "]")
	if !ok {
		return 0, "", false
	}
	i, err := strconv.Atoi(num)
	if err != nil || i < 0 || num != strconv.Itoa(i) {
		return 0, "", false
	}
	switch {
	case rest == "":
		return i, "", true
	case strings.HasPrefix(rest, "."):
		return i, rest[1:], true
	}
	return 0, "", false
}
