// Building the DOM without innerHTML: every text that came from the
// server (job names, labels, log output, error messages) goes in as a text
// node, so nothing it holds is ever parsed as markup.

// h creates an element: h('a.link', {href: '#/jobs'}, 'text', child…).
// The tag may carry .classes and one #id. Attributes starting with "on"
// are event listeners; `class` adds classes; false, null and undefined
// attributes and children are skipped; arrays of children are flattened.
export function h(tag, attrs, ...children) {
  const parts = tag.match(/^[^.#]*|[.#][^.#]*/g);
  const el = document.createElement(parts[0] || 'div');
  for (const p of parts.slice(1)) {
    if (p[0] === '#') el.id = p.slice(1);
    else if (p.length > 1) el.classList.add(p.slice(1));
  }
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') for (const c of String(v).split(/\s+/)) { if (c) el.classList.add(c); }
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

// append adds children (nodes, strings, arrays of them) to el.
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// svg creates an SVG element with attributes.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// clear removes every child of el and returns it.
export function clear(el) {
  el.replaceChildren();
  return el;
}
