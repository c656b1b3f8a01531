package store

// Token records (bucket tokens, keyed by token id) and agent bindings
// (bucket agents, keyed by worker id). Both change rarely, so each write is
// its own request to the commit loop.

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/hodei-jobs/hodei/job"
)

// PutToken stores a new token record. A record with the same id is a
// conflict.
func (db *DB) PutToken(ctx context.Context, t *job.Token) error {
	enc, err := encodeToken(t)
	if err != nil {
		return err
	}
	return db.write(ctx, len(enc), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("token %s exists: %w", t.ID, job.ErrConflict)
		}
		if err := b.Put([]byte(t.ID), enc); err != nil {
			return abort(fmt.Errorf("put token %s: %w", t.ID, err))
		}
		return nil
	})
}

// RevokeToken marks a token revoked at at and returns the record. It fails
// with job.ErrNotFound for an unknown id; revoking twice keeps the first
// time.
func (db *DB) RevokeToken(ctx context.Context, id string, at time.Time) (*job.Token, error) {
	var out *job.Token
	err := db.write(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		t, err := getToken(b, id)
		if err != nil {
			return err
		}
		if !t.Revoked() {
			t.RevokedAt = at
			if err := putToken(b, t); err != nil {
				return err
			}
		}
		out = t
		return nil
	})
	return out, err
}

// TouchTokens records when tokens were last used; ids no longer stored are
// skipped.
func (db *DB) TouchTokens(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return db.write(ctx, 64*len(used), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		for id, at := range used {
			t, err := getToken(b, id)
			if err != nil || !at.After(t.LastUsed) {
				continue
			}
			t.LastUsed = at
			if err := putToken(b, t); err != nil {
				return err
			}
		}
		return nil
	})
}

// Tokens returns every token record in id order (ids are time-ordered).
func (db *DB) Tokens(ctx context.Context) ([]*job.Token, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.Token
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			t, err := decodeToken(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

func getToken(b *bolt.Bucket, id string) (*job.Token, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, fmt.Errorf("token %q: %w", id, job.ErrNotFound)
	}
	return decodeToken(id, v)
}

func putToken(b *bolt.Bucket, t *job.Token) error {
	enc, err := encodeToken(t)
	if err != nil {
		return abort(err)
	}
	if err := b.Put([]byte(t.ID), enc); err != nil {
		return abort(fmt.Errorf("put token %s: %w", t.ID, err))
	}
	return nil
}

// BindAgent records that a worker id belongs to the certificate issued at
// join. A worker id bound before, revoked or not, is a conflict: an id is
// never handed to a second credential.
func (db *DB) BindAgent(ctx context.Context, bnd *job.AgentBinding) error {
	enc, err := encodeAgent(bnd)
	if err != nil {
		return err
	}
	return db.write(ctx, len(enc), func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAgents)
		if b.Get([]byte(bnd.WorkerID)) != nil {
			return fmt.Errorf("worker id %q is already bound to another agent's certificate: %w", bnd.WorkerID, job.ErrConflict)
		}
		if err := b.Put([]byte(bnd.WorkerID), enc); err != nil {
			return abort(fmt.Errorf("put agent %s: %w", bnd.WorkerID, err))
		}
		return nil
	})
}

// RevokeAgent marks a worker's binding revoked and returns it; job.ErrNotFound
// when the worker never joined.
func (db *DB) RevokeAgent(ctx context.Context, workerID string, at time.Time) (*job.AgentBinding, error) {
	var out *job.AgentBinding
	err := db.write(ctx, 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAgents)
		v := b.Get([]byte(workerID))
		if v == nil {
			return fmt.Errorf("worker %q never joined: %w", workerID, job.ErrNotFound)
		}
		var err error
		if out, err = decodeAgent(workerID, v); err != nil {
			return err
		}
		if out.Revoked() {
			return nil
		}
		out.RevokedAt = at
		enc, err := encodeAgent(out)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(workerID), enc); err != nil {
			return abort(fmt.Errorf("put agent %s: %w", workerID, err))
		}
		return nil
	})
	return out, err
}

// DeleteAgent deletes a worker's binding, so that the certificate it was
// issued no longer authenticates anyone (`hodei workers rm`). Deleting a
// binding that does not exist is not an error.
func (db *DB) DeleteAgent(ctx context.Context, workerID string) error {
	return db.write(ctx, 0, func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketAgents).Delete([]byte(workerID)); err != nil {
			return abort(fmt.Errorf("delete agent %s: %w", workerID, err))
		}
		return nil
	})
}

// AgentBindings returns every agent binding in worker id order.
func (db *DB) AgentBindings(ctx context.Context) ([]*job.AgentBinding, error) {
	if err := db.usable(ctx); err != nil {
		return nil, err
	}
	var out []*job.AgentBinding
	err := db.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
			a, err := decodeAgent(string(k), v)
			if err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list agents: %w", err)
	}
	return out, nil
}

// Fingerprints of the server's identity files kept in meta, so that a
// replaced key or CA is noticed at start instead of locking everyone out.
var (
	tokenKeyCheckKey = []byte("token_key")
	caCheckKey       = []byte("cluster_ca")
)

// TokenKeyCheck and CACheck return the stored fingerprint of the token
// signing key and of the cluster CA, or nil when none is stored yet.
func (db *DB) TokenKeyCheck(ctx context.Context) ([]byte, error) {
	return db.metaGet(ctx, tokenKeyCheckKey)
}
func (db *DB) CACheck(ctx context.Context) ([]byte, error) { return db.metaGet(ctx, caCheckKey) }

// SetTokenKeyCheck and SetCACheck store them once; another value fails
// with job.ErrConflict.
func (db *DB) SetTokenKeyCheck(ctx context.Context, v []byte) error {
	return db.metaBind(ctx, tokenKeyCheckKey, v)
}
func (db *DB) SetCACheck(ctx context.Context, v []byte) error { return db.metaBind(ctx, caCheckKey, v) }
