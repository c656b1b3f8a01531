package server

// Streams that follow a job (Attach, Logs with follow, Watch) last as long
// as the job, and each holds server memory while its client does not
// read: its handler, and the output queued for it (at most grpc-go's
// 64 KiB write quota per stream plus one message of logChunk, about
// 120 KiB in all; BenchmarkNonReadingStreams). So that one token cannot
// open them by the thousand, each token may hold at most
// Config.MaxStreamsPerToken open at once; one more is refused with
// ResourceExhausted naming the limit and the flag that sets it.

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hodei-jobs/hodei/auth"
	"github.com/hodei-jobs/hodei/job"
)

// DefaultMaxStreamsPerToken is Config.MaxStreamsPerToken's default: room
// for a script's hundred `hodei run &` (each holds two: its output and
// its input) and a few terminals, at about 30 MB of server memory if none
// of them reads.
const DefaultMaxStreamsPerToken = 256

// maxStreamsPerConn is the most concurrent streams (HTTP/2's
// SETTINGS_MAX_CONCURRENT_STREAMS) one connection may have; a client
// past it waits for one to end. Tokens are the limit that matters (a
// client can open more connections); this one bounds what one
// connection makes the server hold before any handler runs.
const maxStreamsPerConn = 1024

// streamLimit counts the following streams open per token. The zero
// value is not usable; newStreamLimit makes one. Safe for concurrent use.
type streamLimit struct {
	max  int
	mu   sync.Mutex
	open map[string]int // guarded by mu: streams open, by token id
}

func newStreamLimit(max int) *streamLimit {
	return &streamLimit{max: max, open: make(map[string]int)}
}

// acquire counts one more following stream of the caller, and returns
// the func that ends it, or ResourceExhausted when its token holds the
// most already. A caller without a token (in process, or
// --insecure-no-auth on loopback) is not limited.
func (l *streamLimit) acquire(ctx context.Context) (release func(), err error) {
	id := auth.FromContext(ctx)
	if id == nil || id.TokenID == "" {
		return func() {}, nil
	}
	key := id.TokenID
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key] >= l.max {
		return nil, status.Errorf(codes.ResourceExhausted,
			"this token has %s that follow jobs open (attach, logs -f, watch), the most the server allows "+
				"(hodei serve --max-streams-per-token %d): end one first", job.Count(int64(l.open[key]), "stream", "streams"), l.max)
	}
	l.open[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open[key]--; l.open[key] == 0 {
				delete(l.open, key)
			}
		})
	}, nil
}
