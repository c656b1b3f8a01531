package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"
)

// abortKey is the context key of a stream's abort function.
type abortKey struct{}

// abortableStreams returns the tap that gives every call of a streaming
// method in methods (full names, "/hodei.v1.AgentService/Connect") a
// context the server can end from any goroutine. gRPC reads and writes
// the stream against the context the tap returns, so ending it fails the
// handler's pending Recv and a Send waiting on flow control: a handler can
// block in Recv itself, with no goroutine of its own beside it, and still
// be cut by a revocation, a newer stream of the same worker or a full send
// queue. methods is filled before the server serves and only read after.
func abortableStreams(methods map[string]bool) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if !methods[info.FullMethodName] {
			return ctx, nil
		}
		ctx, abort := context.WithCancelCause(ctx)
		return context.WithValue(ctx, abortKey{}, abort), nil
	}
}

// streamMethods adds the full names of gs's streaming methods to methods.
func streamMethods(gs *grpc.Server, methods map[string]bool) {
	for service, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			if m.IsClientStream || m.IsServerStream {
				methods["/"+service+"/"+m.Name] = true
			}
		}
	}
}

// withAbort returns the context of a stream and the function that ends
// the stream with a cause (context.Cause tells it after). A context that
// did not come through abortableStreams (none should) gets a cancellable
// child instead, which ends what watches the context but not a pending
// Recv.
func withAbort(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	if abort, ok := ctx.Value(abortKey{}).(context.CancelCauseFunc); ok {
		return ctx, abort
	}
	return context.WithCancelCause(ctx)
}
