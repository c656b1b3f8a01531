package memstore_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/hodei-jobs/hodei/cluster"
	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/store/memstore"
	"github.com/hodei-jobs/hodei/store/storetest"
)

var _ cluster.Store = (*memstore.Store)(nil)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) cluster.Store { return memstore.New() })
}

func TestSetWriteError(t *testing.T) {
	s := memstore.New()
	j := storetest.NewJob(1)
	storetest.MustInsert(t, s, j)
	boom := errors.New("boom")
	s.SetWriteError(boom)
	require.ErrorIs(t, s.Insert(t.Context(), []*job.Job{storetest.NewJob(2)}), boom)
	next := j.Clone()
	next.State = job.Cancelled
	_, err := s.Apply(t.Context(), []job.Update{{Expect: j.Expected(), Next: next}})
	require.ErrorIs(t, err, boom)
	require.ErrorIs(t, s.PutWorker(t.Context(), &job.Worker{ID: "w"}), boom)
	require.ErrorIs(t, s.PutTenant(t.Context(), storetest.NewTenant("team-a")), boom)
	require.ErrorIs(t, s.DeleteTenant(t.Context(), "team-a"), boom)
	_, err = s.DeleteFinished(t.Context(), storetest.T0, 1, nil)
	require.ErrorIs(t, err, boom)
	p, jobs := storetest.NewPipeline(1, 11)
	require.ErrorIs(t, s.InsertPipeline(t.Context(), p, jobs), boom)
	require.ErrorIs(t, s.PutPipeline(t.Context(), p), boom)
	require.ErrorIs(t, s.DeletePipeline(t.Context(), p.ID), boom)
	require.Equal(t, j, storetest.MustGet(t, s, j.ID), "nothing changed")
	require.Empty(t, storetest.MustPipelines(t, s))
	_, err = s.Get(t.Context(), jobs[0].ID)
	require.ErrorIs(t, err, job.ErrNotFound)

	s.SetWriteError(nil)
	storetest.MustApply(t, s, j, func(n *job.Job) { n.State = job.Cancelled })
}
