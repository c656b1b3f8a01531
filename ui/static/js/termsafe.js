// TermFilter is the page's copy of the CLI's terminal-safety filter
// (cli/termsafe.go; DESIGN.md, "Security"): job output passes with what
// only paints the screen and loses what would act on a terminal.
//
// It passes printable UTF-8 text, \n \r \t \b, SGR (colours and
// attributes), cursor movement and erasure (CSI A B C D E F G H f J K X d,
// CSI s and u without parameters, CSI ?25h and ?25l) and ESC 7 / ESC 8. It
// drops OSC (titles, clipboard, hyperlinks: the link text stays), DCS,
// SOS, PM and APC with their payloads, every other CSI, every other ESC
// sequence, the other C0 controls and DEL, and C1 controls both as raw
// 8-bit bytes and as UTF-8 (U+0080–U+009F), an 8-bit CSI or string
// introducer with its sequence. Bytes that are not UTF-8 become U+FFFD.
// It keeps its state across calls, so a sequence may be split anywhere
// between chunks; it holds at most maxHeldCSI bytes of a sequence.

const maxHeldCSI = 128;

const GROUND = 0, UTF8 = 1, ESCAPE = 2, ESC_INTER = 3, CSI = 4, CSI_IGNORE = 5, STRING = 6, STRING_ESC = 7;
const REPLACEMENT = [0xef, 0xbf, 0xbd];

function plainByte(b) {
  return (b >= 0x20 && b < 0x7f) || b === 0x0a || b === 0x0d || b === 0x09 || b === 0x08;
}

// utf8Len is the length of the rune a lead byte starts, 0 for a byte that
// cannot start one.
function utf8Len(b) {
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

// decodeRune returns [rune, size] for the bytes held, or [-1, 1] when
// they are not valid UTF-8 (overlong, surrogate, out of range, bad
// continuation).
function decodeRune(bs) {
  const n = utf8Len(bs[0]);
  if (n === 0 || bs.length < n) return [-1, 1];
  let lo = 0x80, hi = 0xbf;
  if (bs[0] === 0xe0) lo = 0xa0;
  else if (bs[0] === 0xed) hi = 0x9f;
  else if (bs[0] === 0xf0) lo = 0x90;
  else if (bs[0] === 0xf4) hi = 0x8f;
  if (bs[1] < lo || bs[1] > hi) return [-1, 1];
  let r = bs[0] & (n === 2 ? 0x1f : n === 3 ? 0x0f : 0x07);
  for (let i = 1; i < n; i++) {
    if (i > 1 && (bs[i] < 0x80 || bs[i] > 0xbf)) return [-1, 1];
    r = (r << 6) | (bs[i] & 0x3f);
  }
  return [r, n];
}

export class TermFilter {
  constructor() {
    this.state = GROUND;
    this.held = [];
    this.out = [];
    this.cont = 0;
    this.lead = 0;
  }

  // write filters the bytes of chunk (a Uint8Array) and returns what passes.
  write(chunk) {
    this.out = [];
    for (const b of chunk) this.step(b);
    return Uint8Array.from(this.out);
  }

  step(b) {
    switch (this.state) {
      case GROUND: this.ground(b); break;
      case UTF8: {
        this.held.push(b);
        const n = utf8Len(this.held[0]);
        if (b < 0x80 || b > 0xbf || (this.held.length === 2 && decodeRune([this.held[0], b, 0x80, 0x80])[0] < 0)) {
          // b broke the rune: what came before is one bad sequence.
          this.held = [];
          this.state = GROUND;
          this.out.push(...REPLACEMENT);
          this.ground(b);
          return;
        }
        if (this.held.length < n) return;
        this.state = GROUND;
        const [r] = decodeRune(this.held);
        if (r >= 0x80 && r <= 0x9f) {
          this.held = [];
          this.c1(r);
        } else {
          this.out.push(...this.held);
          this.held = [];
        }
        break;
      }
      case ESCAPE:
        if (b === 0x5b) { // [
          this.state = CSI;
          this.held = [0x1b, 0x5b];
        } else if (b === 0x5d || b === 0x50 || b === 0x58 || b === 0x5e || b === 0x5f) { // ] P X ^ _
          this.startString();
        } else if (b === 0x37 || b === 0x38) { // 7 8
          this.out.push(0x1b, b);
          this.state = GROUND;
        } else if (b >= 0x20 && b <= 0x2f) {
          this.state = ESC_INTER;
        } else if (b >= 0x30 && b <= 0x7e) {
          this.state = GROUND;
        } else {
          this.control(b);
        }
        break;
      case ESC_INTER:
        if (b >= 0x20 && b <= 0x2f) { /* more intermediates */ } else if (b >= 0x30 && b <= 0x7e) this.state = GROUND;
        else this.control(b);
        break;
      case CSI:
        if (b >= 0x30 && b <= 0x3f && this.held.length < maxHeldCSI) {
          this.held.push(b);
        } else if (b >= 0x20 && b <= 0x3f) { // an intermediate (none is allowed) or too long
          this.held = [];
          this.state = CSI_IGNORE;
        } else if (b >= 0x40 && b <= 0x7e) {
          if (allowCSI(this.held.slice(2), b)) this.out.push(...this.held, b);
          this.held = [];
          this.state = GROUND;
        } else if (b === 0x7f) { /* ignored inside a sequence */ } else {
          this.held = [];
          this.control(b);
        }
        break;
      case CSI_IGNORE:
        if (b >= 0x20 && b <= 0x3f) { /* parameters */ } else if (b >= 0x40 && b <= 0x7e) this.state = GROUND;
        else this.control(b);
        break;
      case STRING: this.stringByte(b); break;
      case STRING_ESC:
        if (b === 0x5c) { this.state = GROUND; return; }
        this.state = ESCAPE; // the ESC ended the string and starts a sequence of its own
        this.step(b);
        break;
    }
  }

  ground(b) {
    if (plainByte(b)) this.out.push(b);
    else if (b === 0x1b) this.state = ESCAPE;
    else if (b < 0x80) { /* other C0 controls, DEL */ } else if (b >= 0xc2 && b <= 0xf4) {
      this.state = UTF8;
      this.held = [b];
    } else if (b <= 0x9f) this.c1(b);
    else this.out.push(...REPLACEMENT);
  }

  control(b) {
    if (b === 0x1b) this.state = ESCAPE;
    else if (b === 0x18 || b === 0x1a) this.state = GROUND;
    else if (b === 0x7f) { /* ignored */ } else {
      this.state = GROUND;
      this.ground(b);
    }
  }

  c1(b) {
    if (b === 0x9b) this.state = CSI_IGNORE;
    else if (b === 0x90 || b === 0x98 || b === 0x9d || b === 0x9e || b === 0x9f) this.startString();
    else this.state = GROUND;
  }

  startString() {
    this.state = STRING;
    this.cont = 0;
  }

  stringByte(b) {
    if (this.cont > 0 && b >= 0x80 && b <= 0xbf) {
      if (this.lead === 0xc2 && b === 0x9c) { this.state = GROUND; return; }
      this.cont--;
      return;
    }
    if (b === 0x07 || b === 0x18 || b === 0x1a || b === 0x9c) this.state = GROUND;
    else if (b === 0x1b) this.state = STRING_ESC;
    else if (b >= 0xc2 && b <= 0xdf) { this.cont = 1; this.lead = b; return; } else if (b >= 0xe0 && b <= 0xef) { this.cont = 2; this.lead = b; return; } else if (b >= 0xf0 && b <= 0xf4) { this.cont = 3; this.lead = b; return; }
    this.cont = 0;
  }
}

// allowCSI reports whether the CSI with parameter bytes params and final
// byte final only paints the screen.
function allowCSI(params, final) {
  const p = String.fromCharCode(...params);
  const f = String.fromCharCode(final);
  if (p.startsWith('?')) return p === '?25' && (f === 'h' || f === 'l');
  for (const c of p) {
    if ((c >= '0' && c <= '9') || c === ';') continue;
    if (c === ':' && f === 'm') continue; // sub-parameters of SGR
    return false;
  }
  switch (f) {
    case 'm': return true;
    case 'J': // erase in display, but not 3 (the viewer's scrollback)
      return !p.split(';').some((x) => x !== '' && Number(x) === 3);
    case 'A': case 'B': case 'C': case 'D': case 'E': case 'F': case 'G': case 'H': case 'f': case 'K': case 'X': case 'd':
      return true;
    case 's': case 'u': return p === '';
  }
  return false;
}
