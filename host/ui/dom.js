// Building DOM nodes without HTML strings: every piece of data becomes a text
// node (or an attribute value), so nothing a trace or an agent says can run
// as markup.

const SVG_NAMESPACE = 'http://www.w3.org/2000/svg';

// h('button', {type: 'button', class: 'primary', onclick: fn}, 'Accept')
// Props: `class`, `text`, `for`, `dataset` (object), `on<event>` (a function),
// DOM properties (`value`, `checked`, `disabled`, `selected`, `hidden`), and
// anything else as an attribute. Children: nodes, strings, numbers, arrays;
// null, undefined and false are skipped.
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  applyProps(element, props);
  append(element, children);
  return element;
}

// The same for SVG elements.
export function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG_NAMESPACE, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected', 'hidden', 'open']);

function applyProps(element, props) {
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) {
      if (PROPERTIES.has(name)) element[name] = false;
      continue;
    }
    if (name === 'class') {
      element.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
    } else if (name === 'text') {
      element.textContent = String(value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (PROPERTIES.has(name)) {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

// Replaces everything in `parent` with `children`.
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

// A fresh id for label/input pairs.
let idCounter = 0;
export function uniqueId(prefix) {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

// A labelled form control: returns [labelElement, control].
export function labelled(labelText, control) {
  if (!control.id) control.id = uniqueId('field');
  return [h('label', {for: control.id}, labelText), control];
}

// An error box, announced at once.
export function errorBox(error) {
  return h('div', {class: 'notice error', role: 'alert'}, messageOf(error));
}

export function messageOf(error) {
  if (!error) return 'Something went wrong.';
  return error.message || String(error);
}

// Numbers and times for people.

export function score(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(3) : '—';
}

export function percent(value) {
  return typeof value === 'number' && Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : '—';
}

export function signed(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  const text = value.toFixed(3);
  return value > 0 ? `+${text}` : value < 0 ? `−${text.slice(1)}` : text;
}

export function count(value) {
  return typeof value === 'number' ? value.toLocaleString('en') : '—';
}

export function time(rfc3339) {
  if (!rfc3339) return '—';
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return String(rfc3339);
  return date.toLocaleString('en-GB', {dateStyle: 'medium', timeStyle: 'short'});
}

export function timeElement(rfc3339) {
  return h('time', {datetime: rfc3339 || ''}, time(rfc3339));
}

// JSON for reading: strings as they are, everything else indented.
export function prettyJson(value) {
  if (typeof value === 'string') return value;
  return JSON.stringify(value, null, 2);
}

// Parses `#/a/b?x=1` into {segments: ['a', 'b'], query: URLSearchParams}.
export function parseHash(hash) {
  const text = (hash || '').replace(/^#\/?/, '');
  const [path, search] = text.split('?', 2);
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  return {segments, query: new URLSearchParams(search || '')};
}

export function hashOf(segments, query) {
  const path = segments.map(encodeURIComponent).join('/');
  const search = query ? new URLSearchParams(query).toString() : '';
  return `#/${path}${search ? `?${search}` : ''}`;
}
