package client

import (
	"context"
	"fmt"
	"iter"

	"google.golang.org/protobuf/proto"
)

// pagedRequest is a list request that pages with a page token.
type pagedRequest interface {
	proto.Message
	GetPageToken() string
}

// pages yields the answers of call from req's page token to the last page,
// one call each, giving each next request the previous answer's token
// (with turn, which may also clear what only the first page asks); it
// stops at the first error, which it yields once with a nil answer. what
// names the listing in the error of a server that repeats a token.
func pages[Req pagedRequest, Resp interface{ GetNextPageToken() string }](ctx context.Context, what string, req Req,
	call func(context.Context, Req) (Resp, error), turn func(Req, string)) iter.Seq2[Resp, error] {
	return func(yield func(Resp, error) bool) {
		page := proto.Clone(req).(Req)
		var zero Resp
		for {
			resp, err := call(ctx, page)
			if err != nil {
				yield(zero, err)
				return
			}
			if !yield(resp, nil) {
				return
			}
			next := resp.GetNextPageToken()
			if next == "" {
				return
			}
			if next == page.GetPageToken() {
				yield(zero, fmt.Errorf("%s: server returned page token %q twice", what, next))
				return
			}
			turn(page, next)
		}
	}
}
