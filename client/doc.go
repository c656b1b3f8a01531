// Package client is a small Go client for a Hodei server's gRPC API
// (JobService and AdminService). The CLI uses it, and so can users'
// programs and tests.
//
// A Client is safe for concurrent use by many goroutines; it owns one gRPC
// connection, opened lazily on the first call, and Close releases it.
//
// Errors from the server come back unchanged as gRPC status errors: use
// status.Code(err) to branch on the kind (codes.NotFound,
// codes.InvalidArgument, codes.Unavailable when the server cannot be
// reached, …) and status.Convert(err).Message() for a message that names the
// offending field. Errors that happen on this side (writing to an io.Writer)
// are wrapped with %w instead.
//
// A call fails when the server is away; a caller that follows a job
// through a restart runs its calls through a Reconnector (capped
// exponential backoff with jitter, one report per outage, a bound on how
// long to wait), and FollowLogs uses one with a LogCursor to resume a job's
// output after the last byte it wrote.
//
// The transport is plaintext for now; WithToken already sends a bearer token
// so that servers which check it work without a client change.
package client
