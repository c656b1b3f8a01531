// Terminal renders job output as a terminal would show it, into a <pre>:
// SGR colours and attributes (16, 256 and true colours), \r returning to
// the start of the line so that a progress bar rewrites itself, \b, \t,
// cursor movement and erasure within the last screenful of lines. Output
// first goes through TermFilter, the same rules as the CLI, so only
// sequences that paint the screen ever reach the renderer.
//
// The screen is rows × cols, as the job's PTY: the cursor never leaves it,
// whatever a sequence asks for (CSI 999;999H lands on the bottom-right
// cell, CSI 99999999C on the last column), and text wraps at the last
// column as xterm's autowrap does: the character after the one written in
// the last column starts the next line (a \r, \b or cursor move before it
// cancels the wrap).
//
// Memory and work are bounded whatever the output: the last maxLines lines
// are kept in the DOM (older ones are dropped, and a note says so); the
// last `rows` lines stay editable for cursor movement, the others are
// final; a line holds at most cols cells (rows and cols at most
// maxScreen), and renders as at most maxRuns elements.

import { TermFilter } from './termsafe.js';

const maxLines = 5000;

// maxScreen bounds the rows and cols of the screen the page keeps (a PTY
// may be up to 65535 wide; wider output wraps here).
export const maxScreen = 1000;

// maxRuns bounds the elements one line renders into: a line that changes
// style more often (only hostile output does, on a screen wider than
// maxRuns columns) shows the rest of its text in the style where the
// limit falls.
export const maxRuns = 256;

const palette16 = ['#000000', '#cd3131', '#0dbc79', '#e5e510', '#2472c8', '#bc3fbc', '#11a8cd', '#e5e5e5',
  '#666666', '#f14c4c', '#23d18b', '#f5f543', '#3b8eea', '#d670d6', '#29b8db', '#ffffff'];

// color256 is the xterm colour n as CSS.
function color256(n) {
  if (n < 16) return palette16[n];
  if (n < 232) {
    n -= 16;
    const v = (x) => (x === 0 ? 0 : 55 + x * 40);
    return `rgb(${v(Math.floor(n / 36))},${v(Math.floor(n / 6) % 6)},${v(n % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

const plain = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false });

function sameStyle(a, b) {
  return a === b || (a.fg === b.fg && a.bg === b.bg && a.bold === b.bold && a.dim === b.dim &&
    a.italic === b.italic && a.underline === b.underline && a.inverse === b.inverse && a.strike === b.strike);
}

// sgr applies the parameters of one SGR sequence to style s.
function sgr(s, params) {
  s = { ...s };
  const ps = params === '' ? ['0'] : params.split(';');
  for (let i = 0; i < ps.length; i++) {
    const sub = ps[i].split(':');
    const n = sub[0] === '' ? 0 : Number(sub[0]);
    if (n === 38 || n === 48) {
      let c = null;
      let mode, rest;
      if (sub.length > 1) { // 38:5:n or 38:2::r:g:b (or 38:2:r:g:b)
        mode = Number(sub[1]);
        rest = sub.slice(2);
        if (mode === 2 && rest.length === 4) rest = rest.slice(1);
      } else {
        mode = Number(ps[i + 1]);
        rest = mode === 5 ? ps.slice(i + 2, i + 3) : ps.slice(i + 2, i + 5);
        i += 1 + rest.length;
      }
      if (mode === 5 && rest.length === 1) c = color256(Number(rest[0]) & 255);
      if (mode === 2 && rest.length === 3) c = `rgb(${rest.map((x) => Number(x) & 255).join(',')})`;
      if (n === 38) s.fg = c; else s.bg = c;
      continue;
    }
    if (n === 0) s = { ...plain };
    else if (n === 1) s.bold = true;
    else if (n === 2) s.dim = true;
    else if (n === 3) s.italic = true;
    else if (n === 4) s.underline = true;
    else if (n === 7) s.inverse = true;
    else if (n === 9) s.strike = true;
    else if (n === 22) { s.bold = false; s.dim = false; } else if (n === 23) s.italic = false;
    else if (n === 24) s.underline = false;
    else if (n === 27) s.inverse = false;
    else if (n === 29) s.strike = false;
    else if (n >= 30 && n <= 37) s.fg = n - 30;
    else if (n === 39) s.fg = null;
    else if (n >= 40 && n <= 47) s.bg = n - 40;
    else if (n === 49) s.bg = null;
    else if (n >= 90 && n <= 97) s.fg = n - 90 + 8;
    else if (n >= 100 && n <= 107) s.bg = n - 100 + 8;
  }
  return Object.freeze(s);
}

// span renders a run of text in one style.
function span(text, s) {
  if (s === plain || sameStyle(s, plain)) return document.createTextNode(text);
  const el = document.createElement('span');
  el.textContent = text;
  let fg = s.fg, bg = s.bg;
  if (s.inverse) { [fg, bg] = [bg === null ? 'inv-fg' : bg, fg === null ? 'inv-bg' : fg]; }
  for (const [v, pre] of [[fg, 'f'], [bg, 'b']]) {
    if (v === null) continue;
    if (typeof v === 'number') el.classList.add(pre + v);
    else if (v === 'inv-fg') el.classList.add('t-inv-' + pre);
    else if (v === 'inv-bg') el.classList.add('t-inv-' + pre);
    else if (pre === 'f') el.style.color = v;
    else el.style.backgroundColor = v;
  }
  if (s.bold) el.classList.add('t-bold');
  if (s.dim) el.classList.add('t-dim');
  if (s.italic) el.classList.add('t-italic');
  if (s.underline) el.classList.add('t-underline');
  if (s.strike) el.classList.add('t-strike');
  return el;
}

// Line is one line of the screen: its cells (character and style).
class Line {
  constructor() {
    this.chars = [];
    this.styles = [];
    this.el = document.createElement('div');
    this.el.className = 't-line';
    this.dirty = true;
  }

  put(col, ch, st) {
    while (this.chars.length < col) { this.chars.push(' '); this.styles.push(plain); }
    this.chars[col] = ch;
    this.styles[col] = st;
    this.dirty = true;
  }

  erase(from, to) { // [from, to)
    to = Math.min(to, this.chars.length);
    if (to >= this.chars.length) { this.chars.length = Math.min(from, this.chars.length); this.styles.length = this.chars.length; } else {
      for (let i = from; i < to; i++) { this.chars[i] = ' '; this.styles[i] = plain; }
    }
    this.dirty = true;
  }

  // render redraws the line if it changed. It never throws: should
  // building the styled runs fail, the line shows its text unstyled, and
  // the lines after it are still drawn.
  render() {
    if (!this.dirty) return;
    this.dirty = false;
    try {
      const frag = document.createDocumentFragment();
      const n = this.chars.length;
      let i = 0;
      for (let runs = 1; i < n; runs++) {
        let j = i + 1;
        if (runs === maxRuns) j = n;
        else while (j < n && sameStyle(this.styles[j], this.styles[i])) j++;
        frag.append(span(this.chars.slice(i, j).join(''), this.styles[i]));
        i = j;
      }
      this.el.replaceChildren(frag);
    } catch (e) {
      try {
        this.el.replaceChildren(document.createTextNode(this.chars.join('')));
      } catch { /* leave the line as it was */ }
      console.error('terminal: rendering a line:', e);
    }
  }
}

// clampSize is n as a screen dimension: a whole number in [1, maxScreen],
// def when n is not a number.
function clampSize(n, def) {
  n = Math.floor(Number(n));
  if (!Number.isFinite(n)) return def;
  return Math.min(maxScreen, Math.max(1, n));
}

export class Terminal {
  // pre is the element the output goes into; rows and cols the size of
  // the screen (the job's PTY), within which the cursor moves and at whose
  // last column text wraps. Both are clamped to [1, maxScreen].
  constructor(pre, rows = 24, cols = 80) {
    this.pre = pre;
    this.rows = clampSize(rows, 24);
    this.cols = clampSize(cols, 80);
    this.filter = new TermFilter();
    this.decoder = new TextDecoder('utf-8');
    this.lines = []; // the last `rows` lines, still editable
    this.count = 0; // lines in the DOM
    this.row = 0; // cursor, an index into this.lines
    this.col = 0; // 0 to cols; cols: the last column was written, the next character wraps
    this.saved = [0, 0]; // row on the screen (from screenTop), col
    this.style = plain;
    this.pending = ''; // text of an escape sequence split between chunks
    this.scheduled = false;
    this.settled = []; // lines that left the screen and are not drawn yet, oldest first
    this.settledHead = 0; // this.settled[:settledHead] were trimmed
    this.newLine();
  }

  // write takes a chunk of raw output bytes (Uint8Array).
  write(bytes) {
    const text = this.pending + this.decoder.decode(this.filter.write(bytes), { stream: true });
    this.pending = '';
    this.feed(text);
    this.schedule();
  }

  // note adds a line of the page's own (an attempt's start), not output.
  note(text) {
    if (this.lines[this.row].chars.length > 0) this.lineFeed();
    this.lines[this.row].el.classList.add('t-note');
    for (const ch of text) this.print(ch, plain);
    this.lineFeed();
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      const stick = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
      this.render();
      if (stick) this.pre.scrollTop = this.pre.scrollHeight;
    });
  }

  // render draws the lines that changed: those that left the screen
  // since the last frame (unless already trimmed), then the screen's.
  render() {
    for (let i = this.settledHead; i < this.settled.length; i++) {
      const l = this.settled[i];
      if (l.el.parentNode === this.pre) l.render();
    }
    this.settled = [];
    this.settledHead = 0;
    for (const l of this.lines) l.render();
  }

  newLine() {
    const l = new Line();
    this.pre.append(l.el);
    this.count++;
    this.lines.push(l);
    if (this.lines.length > this.rows) {
      // Drawn at the next frame, so that a flood of output does not
      // draw the lines that it trims before the frame.
      const old = this.lines.shift();
      if (old.dirty) this.settled.push(old);
    }
    while (this.count > maxLines) {
      const first = this.pre.firstElementChild;
      if (!first) break;
      if (!first.classList.contains('t-trimmed')) {
        first.remove();
        this.count--;
        if (!this.trimmedNote) {
          this.trimmedNote = document.createElement('div');
          this.trimmedNote.className = 't-line t-note t-trimmed';
          this.trimmedNote.textContent = `… earlier output not shown (the page keeps the last ${maxLines} lines)`;
          this.pre.prepend(this.trimmedNote);
        }
      } else {
        const second = first.nextElementSibling;
        if (!second) break;
        second.remove();
        this.count--;
      }
    }
    // The settled lines are in DOM order: the trimmed ones are first.
    while (this.settledHead < this.settled.length && this.settled[this.settledHead].el.parentNode !== this.pre) this.settledHead++;
    if (this.settledHead >= 1024) {
      this.settled = this.settled.slice(this.settledHead);
      this.settledHead = 0;
    }
    this.row = this.lines.length - 1;
  }

  lineFeed() {
    if (this.row < this.lines.length - 1) this.row++;
    else this.newLine();
    this.col = 0;
  }

  // screenTop is the index in this.lines of the screen's first row.
  screenTop() {
    return Math.max(0, this.lines.length - this.rows);
  }

  // moveRow moves the cursor to row r of this.lines, clamped to the
  // screen; rows of the screen below the last line written are added
  // (blank) first. It never scrolls, as CSI B and CSI H do not.
  moveRow(r) {
    const top = this.screenTop();
    r = Math.min(Math.max(top, r), top + this.rows - 1);
    while (this.lines.length <= r) this.newLine(); // at most rows lines: newLine scrolls only past rows
    this.row = Math.min(r, this.lines.length - 1);
  }

  // lastCol is the cursor's column for a move relative to it: a wrap
  // pending at the right edge is cancelled.
  lastCol() {
    return Math.min(this.col, this.cols - 1);
  }

  // print writes one character at the cursor, wrapping first if the last
  // column was written.
  print(ch, st) {
    if (this.col >= this.cols) this.lineFeed();
    this.lines[this.row].put(this.col++, ch, st);
  }

  save() {
    this.saved = [this.row - this.screenTop(), this.col];
  }

  restore() {
    const [r, c] = this.saved;
    this.row = Math.min(this.screenTop() + r, this.lines.length - 1);
    this.col = Math.min(c, this.cols);
  }

  feed(text) {
    const n = text.length;
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x1b) {
        if (i + 1 >= n) { this.pending = text.slice(i); return; }
        const d = text[i + 1];
        if (d === '7') { this.save(); i += 2; continue; }
        if (d === '8') { this.restore(); i += 2; continue; }
        if (d === '[') {
          let j = i + 2;
          while (j < n && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x3f) j++;
          if (j >= n) { this.pending = text.slice(i); return; }
          this.csi(text.slice(i + 2, j), text[j]);
          i = j + 1;
          continue;
        }
        i += 1; // cannot happen after the filter
        continue;
      }
      if (c === 0x0a) { this.lineFeed(); i++; continue; }
      if (c === 0x0d) { this.col = 0; i++; continue; }
      if (c === 0x08) { this.col = Math.max(0, this.lastCol() - 1); i++; continue; }
      if (c === 0x09) { // to the next tab stop (every 8 columns), at most the last column; cells are not written
        this.col = Math.min(this.cols - 1, (Math.floor(this.col / 8) + 1) * 8);
        i++;
        continue;
      }
      // one character (a surrogate pair counts as one)
      const cp = text.codePointAt(i);
      const ch = String.fromCodePoint(cp);
      this.print(ch, this.style);
      i += ch.length;
    }
  }

  csi(params, final) {
    if (final === 'm') { this.style = sgr(this.style, params); return; }
    if (params.startsWith('?')) return; // ?25h / ?25l: the page shows no cursor
    const ps = params.split(';').map((x) => (x === '' ? 0 : Number(x)));
    const n = Math.max(1, ps[0] || 0);
    const line = this.lines[this.row];
    switch (final) {
      case 'A': this.row = Math.max(this.screenTop(), this.row - n); break;
      case 'B': this.moveRow(this.row + n); break;
      case 'C': this.col = Math.min(this.cols - 1, this.lastCol() + n); break;
      case 'D': this.col = Math.max(0, this.lastCol() - n); break;
      case 'E': this.moveRow(this.row + n); this.col = 0; break;
      case 'F': this.row = Math.max(this.screenTop(), this.row - n); this.col = 0; break;
      case 'G': this.col = Math.min(this.cols, n) - 1; break;
      case 'd': this.moveRow(this.screenTop() + n - 1); break;
      case 'H': case 'f':
        this.moveRow(this.screenTop() + n - 1);
        this.col = Math.min(this.cols, Math.max(1, ps[1] || 0)) - 1;
        break;
      case 'K': {
        const m = ps[0] || 0;
        if (m === 0) line.erase(this.lastCol(), Infinity);
        else if (m === 1) line.erase(0, this.lastCol() + 1);
        else line.erase(0, Infinity);
        break;
      }
      case 'X': line.erase(this.lastCol(), this.lastCol() + n); break;
      case 'J': {
        const m = ps[0] || 0;
        const top = m === 0 ? this.row + 1 : this.screenTop();
        if (m === 0) line.erase(this.lastCol(), Infinity);
        if (m === 1) { for (let r = this.screenTop(); r < this.row; r++) this.lines[r].erase(0, Infinity); line.erase(0, this.lastCol() + 1); }
        if (m === 0 || m === 2) for (let r = top; r < this.lines.length; r++) this.lines[r].erase(0, Infinity);
        break;
      }
      case 's': this.save(); break;
      case 'u': this.restore(); break;
    }
  }

  // text is what the terminal shows, line by line (for tests).
  text() {
    this.render();
    return [...this.pre.querySelectorAll('.t-line')].map((e) => e.textContent).join('\n');
  }
}
