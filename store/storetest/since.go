package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
)

// IDAt returns a ULID made at t (to the millisecond) whose random part is
// seq: an id as the server makes it for a job created at t.
func IDAt(t time.Time, seq uint64) string {
	const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	var b [26]byte
	ms := uint64(t.UnixMilli())
	for i := 9; i >= 0; i-- {
		b[i] = crockford[ms%32]
		ms /= 32
	}
	for i := 25; i >= 10; i-- {
		b[i] = crockford[seq%32]
		seq /= 32
	}
	return string(b[:])
}

// testListSince checks Since on jobs whose ids were made at their
// creation, one a minute: newest first the walk stops at the first one
// made before it, and in both orders only the later ones are listed and
// counted.
func testListSince(t *testing.T, open func(*testing.T) cluster.Store) {
	s := open(t)
	var all []string
	for n := range 30 {
		j := NewJob(n + 1)
		j.CreatedAt = T0.Add(time.Duration(n) * time.Minute)
		j.ID = IDAt(j.CreatedAt, uint64(n))
		if n%3 == 0 {
			j.Spec.Tenant = job.DefaultTenant
		}
		MustInsert(t, s, j)
		all = append(all, j.ID)
	}
	since := T0.Add(20*time.Minute + time.Second) // after job 21's creation, before 22's
	want := all[21:]
	for _, tc := range []struct {
		name string
		f    job.Filter
		want []string
	}{
		{"Ascending", job.Filter{Since: since}, want},
		{"Descending", job.Filter{Since: since, Desc: true}, reversed(want)},
		{"Tenant", job.Filter{Since: since, Tenant: job.DefaultTenant, Desc: true}, reversed(want)},
		{"Label", job.Filter{Since: since, Labels: map[string]string{"parity": "odd"}, Desc: true}, reversed(every(want, 2, 1))},
		{"Exact", job.Filter{Since: T0.Add(21 * time.Minute), Desc: true}, reversed(want)},
		{"All", job.Filter{Since: T0.Add(-time.Hour)}, all},
		{"None", job.Filter{Since: T0.Add(time.Hour)}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, listed(t, s, tc.f, 4))
			n, exact, err := s.Count(t.Context(), tc.f, 1<<30)
			require.NoError(t, err)
			require.True(t, exact)
			require.Equal(t, len(tc.want), n)
		})
	}
}

// reversed returns ids in reverse order.
func reversed(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[len(ids)-1-i] = id
	}
	return out
}

// every returns ids[from], ids[from+step], ….
func every(ids []string, step, from int) []string {
	var out []string
	for i := from; i < len(ids); i += step {
		out = append(out, ids[i])
	}
	return out
}
