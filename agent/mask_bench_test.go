package agent

import (
	"bytes"
	"fmt"
	"testing"
)

// logLines is ordinary output with no secret in it.
var logLines = bytes.Repeat([]byte("some ordinary log output, nothing to hide\n"), 1600)

// BenchmarkMaskerChunks masks the same output read in chunks of several
// sizes: a PTY often delivers a line or less per read.
func BenchmarkMaskerChunks(b *testing.B) {
	for _, size := range []int{64, 512, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			m := newMasker([]string{"s3cret-token-value", "another-secret"})
			var out []byte
			b.SetBytes(int64(len(logLines)))
			for b.Loop() {
				for rest := logLines; len(rest) > 0; {
					n := min(size, len(rest))
					out = m.mask(out[:0], rest[:n])
					rest = rest[n:]
				}
				out = m.flush(out[:0])
			}
		})
	}
}

// BenchmarkMaskerSecrets masks output with a secret on every tenth line,
// against a growing number of secrets.
func BenchmarkMaskerSecrets(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("secrets=%d", n), func(b *testing.B) {
			var secrets []string
			for i := range n {
				secrets = append(secrets, fmt.Sprintf("s3cret-token-%02d", i))
			}
			var text []byte
			for i := 0; len(text) < len(logLines); i++ {
				text = append(text, "some ordinary log output, nothing to hide\n"...)
				if i%10 == 0 {
					text = fmt.Appendf(text, "token=%s\n", secrets[i%n])
				}
			}
			m := newMasker(secrets)
			var out []byte
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				out = m.mask(out[:0], text)
			}
		})
	}
}
