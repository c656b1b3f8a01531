package cli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hodei-jobs/hodei/client"
	hodeipb "github.com/hodei-jobs/hodei/proto"
)

// queuedEvery is how long `hodei run` lets a job wait before it says why
// the job is still pending, and how often it asks again after that.
const queuedEvery = time.Second

// reportQueued prints "queued: REASON" on w once job id has been pending
// for queuedEvery, and again whenever the reason changes (a job merely
// waiting its turn is said once, not at each move of the count ahead of
// it), until the job leaves PENDING or ctx ends. A failed ask is asked
// again at the next tick: the server may be restarting.
func reportQueued(ctx context.Context, cl *client.Client, id string, w io.Writer) {
	tick := time.NewTicker(queuedEvery)
	defer tick.Stop()
	var said *hodeipb.PendingReason
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		j, err := cl.Get(ctx, id)
		switch {
		case err != nil:
			continue
		case j.GetState() != hodeipb.JobState_JOB_STATE_PENDING:
			return
		}
		why := j.GetPending()
		if why == nil || sameWait(said, why) {
			continue
		}
		said = why
		fmt.Fprintf(w, "queued: %s\n", visible(why.GetMessage(), ""))
	}
}

// sameWait reports whether b says what a said, for reportQueued: the same
// message, or both only queued.
func sameWait(a, b *hodeipb.PendingReason) bool {
	if a == nil {
		return false
	}
	if a.GetKind() == hodeipb.PendingKind_PENDING_KIND_QUEUED && b.GetKind() == a.GetKind() {
		return true
	}
	return a.GetMessage() == b.GetMessage()
}

// lockedWriter serialises the writes of several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
