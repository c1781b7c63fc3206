// Building the DOM: attributes set as attributes and children appended as nodes or text, never
// parsed as HTML, so names and messages from other users can never become markup.

/** Creates an element: h('li', {class: 'x', 'data-seq': 3}, child, 'text'). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.filter((c) => c != null && c !== false));
  return el;
}
