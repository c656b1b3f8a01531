// Terminal renders job output as a terminal would show it, into a <pre>:
// SGR colours and attributes (16, 256 and true colours), \r returning to
// the start of the line so that a progress bar rewrites itself, \b, \t,
// cursor movement and erasure within the last screenful of lines. Output
// first goes through TermFilter, the same rules as the CLI, so only
// sequences that paint the screen ever reach the renderer.
//
// Memory is bounded: the last maxLines lines are kept in the DOM (older
// ones are dropped, and a note says so); the last `rows` lines stay
// editable for cursor movement, the others are final.

import { TermFilter } from './termsafe.js';

const maxLines = 5000;

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

  render() {
    if (!this.dirty) return;
    this.dirty = false;
    const parts = [];
    let i = 0;
    while (i < this.chars.length) {
      let j = i + 1;
      while (j < this.chars.length && sameStyle(this.styles[j], this.styles[i])) j++;
      parts.push(span(this.chars.slice(i, j).join(''), this.styles[i]));
      i = j;
    }
    if (parts.length === 0) parts.push(document.createTextNode(''));
    this.el.replaceChildren(...parts);
  }
}

export class Terminal {
  // pre is the element the output goes into; rows the height of a
  // screen, within which the cursor may move up.
  constructor(pre, rows = 24) {
    this.pre = pre;
    this.rows = Math.max(1, rows);
    this.filter = new TermFilter();
    this.decoder = new TextDecoder('utf-8');
    this.lines = []; // the last `rows` lines, still editable
    this.count = 0; // lines in the DOM
    this.row = 0; // cursor, an index into this.lines
    this.col = 0;
    this.saved = [0, 0];
    this.style = plain;
    this.pending = ''; // text of an escape sequence split between chunks
    this.scheduled = false;
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
    const l = this.lines[this.row];
    l.el.classList.add('t-note');
    const st = plain;
    for (const ch of text) l.put(this.col++, ch, st);
    this.lineFeed();
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      const stick = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
      for (const l of this.lines) l.render();
      if (stick) this.pre.scrollTop = this.pre.scrollHeight;
    });
  }

  newLine() {
    const l = new Line();
    this.pre.append(l.el);
    this.count++;
    this.lines.push(l);
    if (this.lines.length > this.rows) {
      const old = this.lines.shift();
      old.render();
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

  moveRow(r) {
    r = Math.max(0, r);
    while (r >= this.lines.length) { this.newLine(); }
    this.row = Math.min(r, this.lines.length - 1);
  }

  feed(text) {
    const n = text.length;
    let i = 0;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x1b) {
        if (i + 1 >= n) { this.pending = text.slice(i); return; }
        const d = text[i + 1];
        if (d === '7') { this.saved = [this.row, this.col]; i += 2; continue; }
        if (d === '8') { [this.row, this.col] = this.saved; this.row = Math.min(this.row, this.lines.length - 1); i += 2; continue; }
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
      if (c === 0x08) { this.col = Math.max(0, this.col - 1); i++; continue; }
      if (c === 0x09) {
        const to = (Math.floor(this.col / 8) + 1) * 8;
        const l = this.lines[this.row];
        while (this.col < to) l.put(this.col++, ' ', this.style);
        i++;
        continue;
      }
      // one character (a surrogate pair counts as one)
      const cp = text.codePointAt(i);
      const ch = String.fromCodePoint(cp);
      this.lines[this.row].put(this.col++, ch, this.style);
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
      case 'C': this.col += n; break;
      case 'D': this.col = Math.max(0, this.col - n); break;
      case 'E': this.moveRow(this.row + n); this.col = 0; break;
      case 'F': this.row = Math.max(this.screenTop(), this.row - n); this.col = 0; break;
      case 'G': this.col = n - 1; break;
      case 'd': this.moveRow(this.screenTop() + n - 1); break;
      case 'H': case 'f':
        this.moveRow(this.screenTop() + Math.max(1, ps[0] || 0) - 1);
        this.col = Math.max(1, ps[1] || 0) - 1;
        break;
      case 'K': {
        const m = ps[0] || 0;
        if (m === 0) line.erase(this.col, Infinity);
        else if (m === 1) line.erase(0, this.col + 1);
        else line.erase(0, Infinity);
        break;
      }
      case 'X': line.erase(this.col, this.col + n); break;
      case 'J': {
        const m = ps[0] || 0;
        const top = m === 0 ? this.row + 1 : this.screenTop();
        if (m === 0) line.erase(this.col, Infinity);
        if (m === 1) { for (let r = this.screenTop(); r < this.row; r++) this.lines[r].erase(0, Infinity); line.erase(0, this.col + 1); }
        if (m === 0 || m === 2) for (let r = top; r < this.lines.length; r++) this.lines[r].erase(0, Infinity);
        break;
      }
      case 's': this.saved = [this.row, this.col]; break;
      case 'u': [this.row, this.col] = this.saved; this.row = Math.min(this.row, this.lines.length - 1); break;
    }
  }

  // text is what the terminal shows, line by line (for tests).
  text() {
    for (const l of this.lines) l.render();
    return [...this.pre.querySelectorAll('.t-line')].map((e) => e.textContent).join('\n');
  }
}
