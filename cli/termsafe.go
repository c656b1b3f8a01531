package cli

import (
	"bytes"
	"io"
	"strconv"
	"unicode/utf8"
)

// maxHeldCSI bounds the bytes of a control sequence held while it may still
// turn out to be allowed. The longest useful one, a true-colour foreground
// and background with attributes, is about 45 bytes; a longer one is
// dropped without being held.
const maxHeldCSI = 128

// termState is where a termFilter is in the byte stream.
type termState uint8

const (
	tsGround    termState = iota // text
	tsUTF8                       // inside a multi-byte rune of text; held has its bytes so far
	tsEscape                     // after ESC
	tsEscInter                   // ESC and intermediates (charset designation, DECALN …): dropped
	tsCSI                        // ESC [ and parameters, held while they may be allowed
	tsCSIIgnore                  // a CSI being dropped, up to its final byte
	tsString                     // OSC, DCS, SOS, PM or APC payload, dropped up to its terminator
	tsStringEsc                  // ESC inside a string: ESC \ ends it
)

// utf8Replacement is U+FFFD, shown for bytes that are not UTF-8.
var utf8Replacement = []byte("\uFFFD")

// termFilter passes job output to a terminal with what only paints the
// screen and drops what acts on the terminal or the system around it.
//
// It passes printable UTF-8 text, \n \r \t \b, SGR (colours and
// attributes), cursor movement and erasure (CSI A B C D E F G H f J K X d,
// CSI s and u without parameters, CSI ?25h and ?25l) and ESC 7 / ESC 8. It
// drops OSC (titles, the OSC 52 clipboard, OSC 8 hyperlinks: the link text
// stays), DCS, SOS, PM and APC with their payloads, every other CSI (device
// status reports that make the terminal type into its input, window
// manipulation, mode changes), every other ESC sequence, the other C0
// controls and DEL, and C1 controls both as raw 8-bit bytes and as UTF-8
// (U+0080–U+009F), an 8-bit CSI or string introducer with its sequence.
// Bytes that are not UTF-8 show as U+FFFD.
//
// The filter keeps its state across writes, so a sequence may be split
// anywhere between them. It holds at most maxHeldCSI bytes of a sequence;
// a string is dropped as it streams, however long. A termFilter is not
// safe for concurrent use: one goroutine owns it, one per stream. It does
// not own w and never closes it.
type termFilter struct {
	w     io.Writer
	state termState
	held  []byte // the partial CSI or UTF-8 rune of tsCSI and tsUTF8
	out   []byte // reused output buffer of one Write
	cont  int    // continuation bytes still expected in a string's rune
	lead  byte   // that rune's first byte
	// What Close puts back: the last SGR passed left attributes set, the
	// last ?25 hid the cursor.
	styled, hidden bool
}

// newTermFilter returns a filter writing to w.
func newTermFilter(w io.Writer) *termFilter {
	return &termFilter{w: w, held: make([]byte, 0, maxHeldCSI+1)}
}

// Write filters p and writes what passes to the underlying writer in one
// call. It consumes all of p whatever happens downstream: it returns
// len(p) and the underlying writer's error, if any.
func (f *termFilter) Write(p []byte) (int, error) {
	f.out = f.out[:0]
	for i := 0; i < len(p); {
		if f.state == tsGround {
			j := i
			for j < len(p) {
				if plainByte(p[j]) {
					j++
					continue
				}
				// A whole rune past C1 passes too; a rune split between
				// writes goes through step.
				if r, n := utf8.DecodeRune(p[j:]); n > 1 && r > 0x9f {
					j += n
					continue
				}
				break
			}
			f.out = append(f.out, p[i:j]...)
			if i = j; i == len(p) {
				break
			}
		}
		f.step(p[i])
		i++
	}
	if len(f.out) == 0 {
		return len(p), nil
	}
	_, err := f.w.Write(f.out)
	return len(p), err
}

// Close drops a sequence left unfinished and, if the output left colours
// set or the cursor hidden, writes the sequences that reset them. It does
// not close the underlying writer.
func (f *termFilter) Close() error {
	f.state, f.held = tsGround, f.held[:0]
	var reset []byte
	if f.styled {
		reset = append(reset, "\x1b[0m"...)
	}
	if f.hidden {
		reset = append(reset, "\x1b[?25h"...)
	}
	f.styled, f.hidden = false, false
	if len(reset) == 0 {
		return nil
	}
	_, err := f.w.Write(reset)
	return err
}

// plainByte reports whether b passes as it is in text: printable ASCII and
// the four controls that only move the cursor.
func plainByte(b byte) bool {
	return (b >= 0x20 && b < 0x7f) || b == '\n' || b == '\r' || b == '\t' || b == '\b'
}

// step feeds one byte to the state machine.
func (f *termFilter) step(b byte) {
	switch f.state {
	case tsGround:
		f.ground(b)
	case tsUTF8:
		f.held = append(f.held, b)
		if !utf8.FullRune(f.held) {
			return
		}
		f.state = tsGround
		r, n := utf8.DecodeRune(f.held)
		switch {
		case n == 1 && r == utf8.RuneError:
			// b broke the rune: what came before is one bad sequence.
			f.held = f.held[:0]
			f.out = append(f.out, utf8Replacement...)
			f.ground(b)
		case r >= 0x80 && r <= 0x9f:
			f.held = f.held[:0]
			f.c1(byte(r))
		default:
			f.out = append(f.out, f.held...)
			f.held = f.held[:0]
		}
	case tsEscape:
		switch {
		case b == '[':
			f.state = tsCSI
			f.held = append(f.held[:0], 0x1b, '[')
		case b == ']' || b == 'P' || b == 'X' || b == '^' || b == '_':
			f.startString()
		case b == '7' || b == '8':
			f.out = append(f.out, 0x1b, b)
			f.state = tsGround
		case b >= 0x20 && b <= 0x2f:
			f.state = tsEscInter
		case b >= 0x30 && b <= 0x7e:
			f.state = tsGround
		default:
			f.control(b)
		}
	case tsEscInter:
		switch {
		case b >= 0x20 && b <= 0x2f:
		case b >= 0x30 && b <= 0x7e:
			f.state = tsGround
		default:
			f.control(b)
		}
	case tsCSI:
		switch {
		case b >= 0x30 && b <= 0x3f && len(f.held) < maxHeldCSI:
			f.held = append(f.held, b)
		case b >= 0x20 && b <= 0x3f: // an intermediate (none is allowed) or too long
			f.held = f.held[:0]
			f.state = tsCSIIgnore
		case b >= 0x40 && b <= 0x7e:
			if f.allowCSI(f.held[2:], b) {
				f.out = append(f.out, f.held...)
				f.out = append(f.out, b)
			}
			f.held = f.held[:0]
			f.state = tsGround
		case b == 0x7f: // ignored inside a sequence, as terminals do
		default:
			f.held = f.held[:0]
			f.control(b)
		}
	case tsCSIIgnore:
		switch {
		case b >= 0x20 && b <= 0x3f:
		case b >= 0x40 && b <= 0x7e:
			f.state = tsGround
		default:
			f.control(b)
		}
	case tsString:
		f.stringByte(b)
	case tsStringEsc:
		if b == '\\' {
			f.state = tsGround
			return
		}
		// The ESC ended the string and starts a sequence of its own.
		f.state = tsEscape
		f.step(b)
	}
}

// ground handles a byte of text that plainByte did not pass.
func (f *termFilter) ground(b byte) {
	switch {
	case plainByte(b):
		f.out = append(f.out, b)
	case b == 0x1b:
		f.state = tsEscape
	case b < 0x80: // other C0 controls, DEL
	case b >= 0xc2 && b <= 0xf4: // a lead byte of UTF-8
		f.state = tsUTF8
		f.held = append(f.held[:0], b)
	case b <= 0x9f: // raw 8-bit C1
		f.c1(b)
	default:
		f.out = append(f.out, utf8Replacement...)
	}
}

// control handles a byte that interrupts an escape or control sequence:
// ESC starts a new one, CAN and SUB cancel it, DEL is ignored; anything
// else ends it (dropped) and is then text.
func (f *termFilter) control(b byte) {
	switch b {
	case 0x1b:
		f.state = tsEscape
	case 0x18, 0x1a:
		f.state = tsGround
	case 0x7f:
	default:
		f.state = tsGround
		f.ground(b)
	}
}

// c1 acts on a C1 control as an 8-bit terminal would, so that its
// sequence goes with it: CSI drops up to its final byte, DCS, SOS, OSC, PM
// and APC up to their terminator; the others are dropped alone.
func (f *termFilter) c1(b byte) {
	switch b {
	case 0x9b:
		f.state = tsCSIIgnore
	case 0x90, 0x98, 0x9d, 0x9e, 0x9f:
		f.startString()
	default:
		f.state = tsGround
	}
}

func (f *termFilter) startString() {
	f.state, f.cont = tsString, 0
}

// stringByte drops one byte of a string's payload, ending the string at
// BEL, ESC \ or ST (0x9c raw or as U+009C); CAN and SUB cancel it. The
// payload is followed rune by rune so that a 0x9c inside a UTF-8 title
// (✅ is e2 9c 85) does not end it.
func (f *termFilter) stringByte(b byte) {
	switch {
	case f.cont > 0 && b >= 0x80 && b <= 0xbf:
		if f.lead == 0xc2 && b == 0x9c {
			f.state = tsGround
			return
		}
		f.cont--
		return
	case b == 0x07 || b == 0x18 || b == 0x1a || b == 0x9c:
		f.state = tsGround
	case b == 0x1b:
		f.state = tsStringEsc
	case b >= 0xc2 && b <= 0xdf:
		f.cont, f.lead = 1, b
		return
	case b >= 0xe0 && b <= 0xef:
		f.cont, f.lead = 2, b
		return
	case b >= 0xf0 && b <= 0xf4:
		f.cont, f.lead = 3, b
		return
	}
	f.cont = 0
}

// allowCSI reports whether the CSI with parameter bytes params and final
// byte final only paints the screen, and notes what Close must reset.
func (f *termFilter) allowCSI(params []byte, final byte) bool {
	if len(params) > 0 && params[0] == '?' {
		if string(params) != "?25" || (final != 'h' && final != 'l') {
			return false
		}
		f.hidden = final == 'l'
		return true
	}
	for _, c := range params {
		switch {
		case c >= '0' && c <= '9', c == ';':
		case c == ':' && final == 'm': // sub-parameters of SGR: 38:2::r:g:b
		default:
			return false
		}
	}
	switch final {
	case 'm':
		f.styled = len(params) > 0 && !bytes.Equal(params, []byte("0"))
		return true
	case 'J':
		// Erase in display, but not 3 (also the viewer's scrollback, where
		// earlier output would vanish), however it is written (03, 3;).
		for _, p := range bytes.Split(params, []byte(";")) {
			if n, err := strconv.Atoi(string(p)); err == nil && n == 3 {
				return false
			}
		}
		return true
	case 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'f', 'K', 'X', 'd':
		return true
	case 's', 'u': // save and restore the cursor; with parameters, other things
		return len(params) == 0
	}
	return false
}
