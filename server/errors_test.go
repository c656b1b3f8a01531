package server

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestDiskFullStatus: a write that found the server's disk full is
// ResourceExhausted, without the server's paths.
func TestDiskFullStatus(t *testing.T) {
	err := fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "/srv/hodei/hodei.db", Err: syscall.ENOSPC})
	st := status.Convert(toStatus(err))
	if st.Code() != codes.ResourceExhausted || strings.Contains(st.Message(), "/srv") {
		t.Fatalf("toStatus(%v) = %v %q", err, st.Code(), st.Message())
	}
}
