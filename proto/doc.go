// Package hodeipb is the wire contract: hodei.proto, the Go code generated
// from it (run `make proto` after changing the .proto; the output is
// committed), and the converters between its messages and the job package.
package hodeipb
