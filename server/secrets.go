package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/hodei-jobs/hodei/job"
	pb "github.com/hodei-jobs/hodei/proto"
	"github.com/hodei-jobs/hodei/scheduler"
	"github.com/hodei-jobs/hodei/seal"
	"github.com/hodei-jobs/hodei/store"
)

// SecretsKeyName is the key file's name in the data dir, the default of
// Config.SecretsKeyFile.
const SecretsKeyName = "secrets.key"

// openStore opens the database in the data dir and the key its secret env
// values are sealed with, and seals the values a database from before
// sealing holds in plain text.
//
// The key file is created on the first start only: when the database holds
// a key check (every start after the first does), a missing or other key
// file is an error naming the file (seal.ErrKeyMissing, seal.ErrKeyMismatch),
// since a new key could not open what is stored. After the one-time sealing
// the file is compacted, because bbolt leaves the plain values in the pages
// it freed.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (*store.DB, *seal.Key, error) {
	path := filepath.Join(cfg.DataDir, store.DBFile)
	opts := store.Options{Logger: cfg.Logger}
	db, err := store.OpenDataDir(cfg.DataDir, opts)
	if err != nil {
		return nil, nil, err
	}
	key, sealed, err := openKey(ctx, db, cfg.SecretsKeyFile, log)
	if err != nil {
		return nil, nil, errors.Join(err, db.Close())
	}
	if sealed == 0 {
		return db, key, nil
	}
	log.Info("sealed secret env values stored in plain text by an older version; compacting the database",
		"values", sealed, "key", cfg.SecretsKeyFile)
	if err := db.Close(); err != nil {
		return nil, nil, err
	}
	if err := store.CompactFile(path); err != nil {
		return nil, nil, err
	}
	db, err = store.OpenDataDir(cfg.DataDir, opts)
	if err != nil {
		return nil, nil, err
	}
	return db, key, nil
}

// openKey loads or creates the key, records its check in db when db has
// none, and seals the plain values db holds. It returns how many it sealed.
func openKey(ctx context.Context, db *store.DB, path string, log *slog.Logger) (*seal.Key, int, error) {
	check, err := db.KeyCheck(ctx)
	if err != nil {
		return nil, 0, err
	}
	key, created, err := seal.LoadOrCreate(path, check)
	if err != nil {
		return nil, 0, err
	}
	if created {
		log.Info("created the secrets key: back it up with the database, which cannot give its secrets back without it",
			"key", path, "id", key.ID())
	}
	if check == nil {
		if err := db.SetKeyCheck(ctx, key.Check()); err != nil {
			return nil, 0, err
		}
	}
	n, err := db.SealSecrets(ctx, func(j *job.Job) int { return key.SealPlain(j.ID, j.Spec.SecretEnv) })
	if err != nil {
		return nil, 0, err
	}
	return key, n, nil
}

// sealJob is the scheduler's Config.SealSecrets: a new job's secret env
// values sealed for its id, before it is stored or published.
func (s *Server) sealJob(j *job.Job) {
	j.Spec.SecretEnv = s.key.SealEnv(j.ID, j.Spec.SecretEnv)
}

// sealSchedule and openSchedule are the scheduler's Config.SealScheduleSecrets
// and OpenScheduleSecrets: a schedule's job template keeps its secret env
// values sealed for the schedule (key "tenant/name"; "schedule/" keeps it
// apart from job ids, which never hold a slash), and each tick's job gets
// them sealed for itself.
func (s *Server) sealSchedule(key string, env map[string]string) map[string]string {
	return s.key.SealEnv("schedule/"+key, env)
}

func (s *Server) openSchedule(key string, env map[string]string) (map[string]string, error) {
	return s.key.OpenEnv("schedule/"+key, env)
}

// assignMsg is the Assign order for job j on worker workerID: the one place
// its secret env values are opened, into a message that goes to that
// worker's stream only. When they cannot be opened (the database was
// altered) the attempt fails as not started, in the background, and
// assignMsg returns nil.
func (s *Server) assignMsg(workerID string, j *job.Job) *pb.ServerMessage {
	p := pb.FromJob(j)
	if len(j.Spec.SecretEnv) > 0 {
		// The tasks of an array share the values it sealed under its id;
		// a task sealed on its own (before arrays were one record) under its.
		sealedAs := j.ID
		if j.Spec.Array != "" {
			sealedAs = j.Spec.Array
		}
		env, err := s.key.OpenEnv(sealedAs, j.Spec.SecretEnv)
		if err != nil && sealedAs != j.ID {
			env, err = s.key.OpenEnv(j.ID, j.Spec.SecretEnv)
		}
		if err != nil {
			s.failStart(workerID, j, err)
			return nil
		}
		p.Spec.SecretEnv = env // FromJob shares the job's map: replace it, never write to it
	}
	return &pb.ServerMessage{Msg: &pb.ServerMessage_Assign{Assign: &pb.Assign{Job: p, RunAs: s.sched.RunAs(j.Spec.Tenant)}}}
}

// failStart ends an attempt whose assignment could not be built. It runs
// beside the caller, which may be the dispatch pass, since ending the
// attempt commits.
func (s *Server) failStart(workerID string, j *job.Job, cause error) {
	s.log.Error("assign: cannot open secret env", "job", j.ID, "attempt", j.Attempt, "key", s.cfg.SecretsKeyFile, "err", cause)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, err := s.sched.JobFinished(context.Background(), workerID, scheduler.Finish{
			JobID: j.ID, Attempt: j.Attempt, Outcome: scheduler.StartFailed, ExitCode: -1,
			Reason: fmt.Sprintf("secret env cannot be opened with %s (sealed under another key, or altered)", s.cfg.SecretsKeyFile),
		})
		if err != nil {
			s.log.Warn("assign: end attempt", "job", j.ID, "attempt", j.Attempt, "err", err)
		}
	}()
}
