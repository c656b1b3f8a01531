package store

import "github.com/hodei-jobs/hodei/store/record"

// Stored values are the store's own records (package record), never the
// API's messages, so that a change to the API cannot change the disk
// format; the schema version in meta says which records a file holds (see
// migrate.go). A record does not repeat its key: the decoders take it back.
//
// A job is encoded by the caller's goroutine without its version (proto3
// leaves a zero field out); the commit loop appends the version field
// (withVersion), which is legal protobuf (fields may come in any order), so
// the loop never marshals a whole job. Writes read only the few header
// fields they compare (readHeader), without decoding the rest.

// header is the part of a stored job that writes compare or count.
type header = record.Header

var (
	readHeader  = record.ReadHeader
	withVersion = record.WithVersion

	encodeJob      = record.MarshalJob
	decodeJob      = record.UnmarshalJob
	encodePipeline = record.MarshalPipeline
	decodePipeline = record.UnmarshalPipeline
	encodeWorker   = record.MarshalWorker
	decodeWorker   = record.UnmarshalWorker
	encodeTenant   = record.MarshalTenant
	decodeTenant   = record.UnmarshalTenant
	encodeToken    = record.MarshalToken
	decodeToken    = record.UnmarshalToken
	encodeAgent    = record.MarshalAgent
	decodeAgent    = record.UnmarshalAgent
)
