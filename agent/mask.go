package agent

import (
	"bytes"
	"cmp"
	"slices"
)

// minSecretLen is the shortest secret value that is masked. Shorter values
// ("1", "yes", "dev") occur in ordinary output too often: masking them would
// mangle logs and, by where the stars land, reveal the value anyway.
const minSecretLen = 4

// maskText replaces every masked occurrence in the output.
var maskText = []byte("***")

// masker replaces secret values in a stream of output chunks with "***",
// including a value split across two chunks. To do that it holds back the
// tail of a chunk that could be the start of a secret, at most (longest
// secret − 1) bytes, until the next chunk or flush decides it.
//
// Where secrets overlap, the leftmost match wins and, at one position, the
// longest. A masker is used by one goroutine; a nil *masker means there is
// nothing to mask and callers pass output through untouched.
type masker struct {
	secrets [][]byte // longest first, so a tie at one position takes the longest
	maxLen  int
	held    []byte // tail of the previous chunk, not yet emitted
	work    []byte // held + chunk, reused between calls
	next    []int  // per secret: next match index in work, -1 none, -2 unknown
}

// newMasker returns a masker for the given secret values, or nil when none is
// at least minSecretLen bytes long.
func newMasker(values []string) *masker {
	var secrets [][]byte
	for _, v := range values {
		if len(v) >= minSecretLen && !slices.ContainsFunc(secrets, func(s []byte) bool { return string(s) == v }) {
			secrets = append(secrets, []byte(v))
		}
	}
	if len(secrets) == 0 {
		return nil
	}
	slices.SortFunc(secrets, func(a, b []byte) int { return cmp.Compare(len(b), len(a)) })
	return &masker{secrets: secrets, maxLen: len(secrets[0]), next: make([]int, len(secrets))}
}

// mask appends to dst the part of p (after what was held from earlier calls)
// that can be emitted now, with secrets replaced, and returns it. dst must not
// alias p.
func (m *masker) mask(dst, p []byte) []byte {
	m.work = append(append(m.work[:0], m.held...), p...)
	dst, keep := m.scan(dst, m.work, false)
	m.held = append(m.held[:0], m.work[len(m.work)-keep:]...)
	return dst
}

// flush appends what is still held, masked, to dst: call it at end of output.
func (m *masker) flush(dst []byte) []byte {
	dst, _ = m.scan(dst, m.held, true)
	m.held = m.held[:0]
	return dst
}

// scan appends buf to dst with full matches replaced. Unless final, it stops
// before the longest suffix of buf that is a proper prefix of a secret and
// returns that suffix's length as keep, so the next chunk can complete it.
func (m *masker) scan(dst, buf []byte, final bool) (_ []byte, keep int) {
	for i := range m.next {
		m.next[i] = -2
	}
	start := 0
	for {
		rest := buf[start:]
		hold := len(rest)
		if !final {
			hold = m.partialStart(rest)
		}
		pos, n := m.earliest(buf, start)
		// A match starting at or after a possible longer match that is still
		// incomplete must wait: the next chunk decides which one wins.
		if pos < 0 || pos-start >= hold {
			dst = append(dst, rest[:hold]...)
			return dst, len(rest) - hold
		}
		dst = append(dst, buf[start:pos]...)
		dst = append(dst, maskText...)
		start = pos + n
	}
}

// earliest returns the leftmost match in buf at or after start, and its
// length; the longest secret wins a tie. It returns -1 when there is none.
func (m *masker) earliest(buf []byte, start int) (pos, n int) {
	pos = -1
	for i, s := range m.secrets {
		if m.next[i] == -1 {
			continue // no match left in buf
		}
		if m.next[i] < start {
			j := bytes.Index(buf[start:], s)
			if j < 0 {
				m.next[i] = -1
				continue
			}
			m.next[i] = start + j
		}
		if pos < 0 || m.next[i] < pos {
			pos, n = m.next[i], len(s)
		}
	}
	return pos, n
}

// partialStart returns the index in rest of its longest suffix that is a
// proper prefix of some secret, or len(rest) when there is none.
func (m *masker) partialStart(rest []byte) int {
	for k := max(0, len(rest)-(m.maxLen-1)); k < len(rest); k++ {
		tail := rest[k:]
		for _, s := range m.secrets {
			if len(s) > len(tail) && bytes.HasPrefix(s, tail) {
				return k
			}
		}
	}
	return len(rest)
}
