package agent

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/hodei-jobs/hodei/job"
)

// maskText replaces every masked occurrence in the output.
var maskText = []byte("***")

const (
	// headLen is the length of the prefix patterns are indexed by.
	headLen = 4
	// maxWindow caps the skip scan's window, so shifts fit a uint8.
	maxWindow = 64
	// shiftBits and headBits size the hashed tables (4 KiB and 2 KiB).
	shiftBits = 12
	headBits  = 14
)

// Every pattern is at least job.MinSecretLen bytes long, which the index by
// headLen-byte prefixes needs: this fails to compile otherwise.
const _ = uint(job.MinSecretLen - headLen)

// masker replaces secret values, and the forms a job commonly prints them in
// (see secretForms), in a stream of output chunks with "***", including an
// occurrence split across chunks. To do that it holds back the tail of a
// chunk that could be the start of one, at most (longest pattern − 1) bytes,
// until the next chunk or flush decides it.
//
// Where occurrences overlap, the leftmost wins and, at one position, the
// longest; the rest of an overlapping occurrence is emitted as it is. A
// masker is used by one goroutine; a nil *masker means there is nothing to
// mask and callers pass output through untouched.
//
// It finds occurrences with a Wu–Manber scan: a window as long as the
// shortest pattern moves along the text by how far its last two bytes allow
// (shift), and only where they end some pattern's window are the patterns
// with the same first four bytes (heads) compared. Over ordinary output the
// window moves several bytes a step, whatever the number of patterns.
type masker struct {
	pats   [][]byte // distinct, longest first, so a tie at one position takes the longest
	maxLen int
	window int                        // min(shortest pattern, maxWindow)
	shift  [1 << shiftBits]uint8      // by pairHash of a window's last 2 bytes: how far it may move on
	heads  map[uint32][]int           // indices into pats, by their first headLen bytes
	inHead [1 << headBits / 64]uint64 // filter over heads' keys, by headHash
	firsts [256]bool                  // the first bytes of patterns
	starts map[string]bool            // the prefixes of patterns shorter than headLen

	held []byte // tail of the previous chunk, not yet emitted
	work []byte // held + chunk, reused between calls
}

// newMasker returns a masker for the given secret values, or nil when none is
// at least job.MinSecretLen bytes long (shorter ones are refused at submit).
func newMasker(values []string) *masker {
	seen := make(map[string]bool)
	var pats [][]byte
	for _, v := range values {
		if len(v) < job.MinSecretLen {
			continue
		}
		for _, f := range secretForms([]byte(v)) {
			if len(f) >= job.MinSecretLen && !seen[string(f)] {
				seen[string(f)] = true
				pats = append(pats, f)
			}
		}
	}
	if len(pats) == 0 {
		return nil
	}
	slices.SortFunc(pats, func(a, b []byte) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), bytes.Compare(a, b))
	})
	m := &masker{
		pats:   pats,
		maxLen: len(pats[0]),
		window: min(len(pats[len(pats)-1]), maxWindow),
		heads:  make(map[uint32][]int),
		starts: make(map[string]bool),
	}
	for i := range m.shift {
		m.shift[i] = uint8(m.window - 1)
	}
	for i, p := range pats {
		for j := 1; j < m.window; j++ {
			h := pairHash(p[j-1], p[j])
			m.shift[h] = min(m.shift[h], uint8(m.window-1-j))
		}
		head := binary.LittleEndian.Uint32(p)
		m.heads[head] = append(m.heads[head], i)
		h := headHash(head)
		m.inHead[h/64] |= 1 << (h % 64)
		m.firsts[p[0]] = true
		for n := 1; n < headLen; n++ {
			m.starts[string(p[:n])] = true
		}
	}
	return m
}

func pairHash(a, b byte) uint32 { return (uint32(a)<<8 | uint32(b)) * 0x9E3779B1 >> (32 - shiftBits) }

func headHash(head uint32) uint32 { return head * 0x9E3779B1 >> (32 - headBits) }

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
// before the longest suffix of buf that is a proper prefix of a pattern and
// returns that suffix's length as keep, so the next chunk can complete it.
func (m *masker) scan(dst, buf []byte, final bool) (_ []byte, keep int) {
	hold := len(buf)
	if !final {
		hold = m.partialStart(buf, 0)
	}
	start := 0
	for {
		if start > hold { // a match ran into the held tail: find a shorter one
			hold = m.partialStart(buf, start)
		}
		// A match starting at or after a possible longer match that is still
		// incomplete must wait: the next chunk decides which one wins.
		pos, n := m.earliest(buf, start, hold)
		if pos < 0 {
			dst = append(dst, buf[start:hold]...)
			return dst, len(buf) - hold
		}
		dst = append(dst, buf[start:pos]...)
		dst = append(dst, maskText...)
		start = pos + n
	}
}

// earliest returns the leftmost match in buf starting in [start, end), and
// its length; the longest pattern wins a tie. It returns -1 when there is
// none.
func (m *masker) earliest(buf []byte, start, end int) (pos, n int) {
	w := m.window
	for i, last := start+w-1, min(len(buf), end+w-1); i < last; {
		if s := m.shift[pairHash(buf[i-1], buf[i])]; s > 0 {
			i += int(s)
			continue
		}
		p := i - w + 1
		if head := binary.LittleEndian.Uint32(buf[p:]); m.mayHead(head) {
			for _, k := range m.heads[head] {
				if bytes.HasPrefix(buf[p:], m.pats[k]) {
					return p, len(m.pats[k])
				}
			}
		}
		i++
	}
	return -1, 0
}

func (m *masker) mayHead(head uint32) bool {
	h := headHash(head)
	return m.inHead[h/64]&(1<<(h%64)) != 0
}

// partialStart returns the index of the longest suffix of buf[from:] that is
// a proper prefix of some pattern, or len(buf) when there is none.
func (m *masker) partialStart(buf []byte, from int) int {
	for k := max(from, len(buf)-(m.maxLen-1)); k < len(buf); k++ {
		tail := buf[k:]
		if !m.firsts[tail[0]] {
			continue
		}
		if len(tail) < headLen {
			if m.starts[string(tail)] {
				return k
			}
			continue
		}
		head := binary.LittleEndian.Uint32(tail)
		if !m.mayHead(head) {
			continue
		}
		for _, i := range m.heads[head] {
			if p := m.pats[i]; len(p) > len(tail) && bytes.HasPrefix(p, tail) {
				return k
			}
		}
	}
	return len(buf)
}
