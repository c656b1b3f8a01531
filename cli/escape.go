package cli

// escapeChar starts an escape sequence in keys typed at a terminal, as in
// ssh: only at the start of a line (after Enter) or of the session.
const escapeChar = '~'

// escapeHelp lists the escape sequences, for ~? and the docs.
const escapeHelp = "Supported escape sequences (after Enter):\r\n" +
	"  ~.  detach: leave the job running (hodei attach ID gets back to it)\r\n" +
	"  ~~  send a ~\r\n" +
	"  ~?  this help\r\n" +
	"Ctrl-C and every other key go to the job.\r\n"

// escAction is what an escape sequence asks of the client.
type escAction int

const (
	escNone   escAction = iota
	escDetach           // ~.
	escHelp             // ~?
)

// escaper finds escape sequences in the keys of a terminal. A ~ at the
// start of a line is held back until the next key: '.' detaches, '~' sends
// one ~, '?' asks for help, and any other key is sent after the ~. The
// zero value is not ready: use newEscaper. It is not safe for concurrent
// use.
type escaper struct {
	lineStart bool // the next key starts a line
	tilde     bool // a ~ at a line start waits for the next key
}

func newEscaper() *escaper { return &escaper{lineStart: true} }

// feed appends to dst the keys to send and returns the action the keys
// asked for: on escDetach the keys after the sequence are dropped (the
// client is leaving); escHelp is returned after all the keys were taken.
func (e *escaper) feed(dst, keys []byte) ([]byte, escAction) {
	act := escNone
	for _, b := range keys {
		if e.tilde {
			e.tilde = false
			switch b {
			case '.':
				return dst, escDetach
			case escapeChar:
				dst = append(dst, escapeChar)
				e.lineStart = false
				continue
			case '?':
				act = escHelp
				continue // still at the start of the line, as in ssh
			}
			dst = append(dst, escapeChar)
			e.lineStart = false
		}
		if b == escapeChar && e.lineStart {
			e.tilde = true
			continue
		}
		dst = append(dst, b)
		e.lineStart = b == '\r' || b == '\n'
	}
	return dst, act
}
