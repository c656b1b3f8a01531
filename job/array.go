package job

import (
	"maps"
	"path"
	"strconv"
	"time"
)

// Array is a job array as it is stored: one record for all its tasks. A
// task becomes a Job of its own (Array.Task) only when it is dispatched,
// cancelled on its own, or retried; until then it exists only as its
// position in the record, so a million-task array costs one record.
//
// Task i of the array (First <= i <= Last) has position p = i − First and
// the job id TaskID(ID, p): ids follow the array's, in index order.
type Array struct {
	ID string
	// Spec is the tasks' template: the submitted spec, with Name the base
	// name of the tasks ("name[i]") and without HODEI_ARRAY_INDEX.
	Spec        Spec
	First, Last int
	Limit       int // most tasks running at once; 0: no limit
	CreatedAt   time.Time
	// Cancelled ends every task not yet materialized, at CancelledAt, with
	// CancelReason.
	Cancelled    bool
	CancelReason string
	CancelledAt  time.Time
}

// Len is the number of tasks.
func (a *Array) Len() int { return a.Last - a.First + 1 }

// Clone returns a copy of a that shares nothing mutable with it (the spec's
// maps are shared: specs do not change after submit).
func (a *Array) Clone() *Array {
	c := *a
	return &c
}

// Task returns the job for position p as it is before it is materialized:
// Pending on its first attempt, or Cancelled when the array was.
func (a *Array) Task(p int) *Job {
	s := a.Spec
	s.Env = maps.Clone(a.Spec.Env)
	if s.Env == nil {
		s.Env = make(map[string]string, 1)
	}
	i := a.First + p
	s.Env["HODEI_ARRAY_INDEX"] = strconv.Itoa(i)
	s.Array, s.ArrayIndex, s.ArrayLimit = a.ID, i, a.Limit
	s.Name = a.TaskName(p)
	j := &Job{ID: TaskID(a.ID, p), Spec: s, State: Pending, Attempt: 1, CreatedAt: a.CreatedAt}
	if a.Cancelled {
		j.State, j.Reason, j.FinishedAt = Cancelled, a.CancelReason, a.CancelledAt
	}
	return j
}

// TaskName is the name of the task at position p: the array's base name
// and the task's index, "name[i]".
func (a *Array) TaskName(p int) string {
	return a.Spec.Name + "[" + strconv.Itoa(a.First+p) + "]"
}

// Position returns the position of the task whose job id is id, or false
// when id is not one of a's tasks.
func (a *Array) Position(id string) (int, bool) {
	if len(id) != len(a.ID) || id <= a.ID {
		return 0, false
	}
	d, ok := idDistance(a.ID, id)
	if !ok || d < 1 || d > int64(a.Len()) {
		return 0, false
	}
	return int(d - 1), true
}

// TaskRange returns the positions of the tasks whose ids are between lo
// and hi, both included (ids as long as the array's), and false when no
// task id is: task ids are consecutive numbers in the ids' base 32, so
// the ids between two others are a range of positions.
func (a *Array) TaskRange(lo, hi string) (from, to int, ok bool) {
	first, last := TaskID(a.ID, 0), TaskID(a.ID, a.Len()-1)
	if len(lo) != len(a.ID) || len(hi) != len(a.ID) || hi < first || lo > last || lo > hi {
		return 0, 0, false
	}
	from, to = 0, a.Len()-1
	if lo > first {
		d, _ := idDistance(a.ID, lo) // at most Len: lo is at most last
		from = int(d - 1)
	}
	if hi < last {
		d, _ := idDistance(a.ID, hi)
		to = int(d - 1)
	}
	return from, to, from <= to
}

// ArrayName is the base name of an array's tasks: the spec's name, or its
// command's base name, or "script".
func ArrayName(s Spec) string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Script != "":
		return "script"
	case len(s.Command) > 0:
		return path.Base(s.Command[0])
	}
	return "task"
}

// crockford is the ULID alphabet.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// TaskID is the job id of position p of the array with id array: the
// array's ULID plus p+1, so task ids sort after the array's id and in
// index order. The server reserves the whole range when it makes the
// array (a later id it makes is larger).
func TaskID(array string, p int) string {
	return AddID(array, uint64(p)+1)
}

// AddID returns the ULID id plus n, as a number. id must be a valid id.
func AddID(id string, n uint64) string {
	b := []byte(id)
	carry := n
	for i := len(b) - 1; i >= 0 && carry > 0; i-- {
		d := uint64(digit(b[i])) + carry
		b[i] = crockford[d%32]
		carry = d / 32
	}
	return string(b)
}

// idDistance returns b − a for two ids of the same length, when it fits
// in 40 bits.
func idDistance(a, b string) (int64, bool) {
	var d int64
	for i := 0; i < len(a); i++ {
		x, y := digit(a[i]), digit(b[i])
		if x < 0 || y < 0 {
			return 0, false
		}
		d = d*32 + int64(y-x)
		if d > 1<<40 || d < -(1<<40) {
			return 0, false
		}
	}
	return d, true
}

func digit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		for i := 10; i < len(crockford); i++ {
			if crockford[i] == c {
				return i
			}
		}
	}
	return -1
}

// AdmitArray is Admit for the Len() tasks of an array: its tenant must
// exist, its spec fit the tenant's limits, and its tasks keep the tenant
// within MaxQueued. lookup is as Admit's.
func AdmitArray(a *Array, lookup func(name string) (*Tenant, int, error)) error {
	name := a.Spec.Tenant
	t, queued, err := lookup(name)
	switch {
	case err != nil:
		return err
	case t == nil:
		return UnknownTenant(name)
	}
	if err := t.CheckFits(&a.Spec); err != nil {
		return err
	}
	if n := a.Len(); t.MaxQueued > 0 && queued+n > t.MaxQueued {
		return OverQueued(name, t.MaxQueued, queued, n)
	}
	return nil
}
