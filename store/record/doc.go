// Package record is the disk format of the store: record.proto, the Go code
// generated from it (run `make proto` after changing the .proto; the output
// is committed), and the converters between its records and the job
// package. Only store/ and its subpackages import it: the records stop at
// the store's boundary, as the API's messages stop at server/.
//
// Records are encoded with the generated code. A job, the record the server
// reads a million of at restart, is decoded by a hand-written walker over
// the wire format (job.go) instead: all the strings of a job are
// substrings of one copy of the record, so a decode costs a few
// allocations instead of one per string. Tests check the walker against
// the generated descriptors, field by field.
//
// Every function here is safe for concurrent use. Decoders copy what they
// keep, so their input may be memory that is reused afterwards, such as a
// value inside a bbolt transaction.
package record
