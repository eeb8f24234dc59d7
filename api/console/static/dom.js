// Small helpers to build the page. Values from the API are always set as text, never
// parsed as HTML.

/** An element: h("a", {href: "#/log", class: "x", onclick: f}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElementNS(
    tag === "svg" || attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml",
    tag,
  );
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false || name === "svg") continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** An SVG element (for the charts). */
export const s = (tag, attrs = {}, ...children) => h(tag, { ...attrs, svg: true }, ...children);

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace what `node` holds. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/**
 * A table: columns are [label, row => cell, {num: true}?]; rows the items to show. Each
 * cell carries its column's label, shown beside it where a narrow screen stacks the rows
 * (console.css); the ARIA roles keep it a table for screen readers then.
 */
export function table(caption, columns, rows, rowAttrs = () => ({})) {
  const cls = (opts) => (opts?.num ? "num" : null);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { role: "table" },
      h("caption", {}, caption),
      h("thead", { role: "rowgroup" }, h("tr", { role: "row" },
        columns.map(([label, , opts]) => h("th", { scope: "col", role: "columnheader", class: cls(opts) }, label)))),
      h(
        "tbody",
        { role: "rowgroup" },
        rows.map((row) =>
          h("tr", { role: "row", ...rowAttrs(row) }, columns.map(([label, cell, opts]) =>
            h("td", { role: "cell", class: cls(opts), "data-label": label }, cell(row)))),
        ),
      ),
    ),
  );
}

/** A labelled form control: the label wraps it, so that it is named for every reader. */
export function field(label, control) {
  return h("label", {}, label, control);
}

/** An error, said in words: the API's problem detail where there is one. */
export function problem(error) {
  const detail = error?.problem?.detail || error?.problem?.title || error?.message || String(error);
  const refused = error?.status === 403 ? "The API refused this for your roles: " : "";
  const signIn = error?.status === 401 ? "Your token was not accepted: " : "";
  return h("p", { class: "problem", role: "alert" }, refused, signIn, detail);
}

/** A time as UTC, to the second: the log's own clock, the same for every reader. */
export function when(iso) {
  if (!iso) return "—";
  return iso.replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$|Z$/, " UTC");
}

/** Say something to screen readers (the page's one live region). */
export function announce(text) {
  const region = document.getElementById("announce");
  region.textContent = "";
  requestAnimationFrame(() => (region.textContent = text));
}

/** A moment typed in a datetime-local field, taken as UTC, as the API wants it. */
export function utc(local) {
  if (!local) return undefined;
  return `${local.length === 16 ? `${local}:00` : local}Z`;
}

/** A link to an aggregate's timeline. */
export function aggregateLink(id, text = id, version) {
  return h("a", { href: `#/aggregate/${id}${version ? `?version=${version}` : ""}`, class: "mono" }, text);
}

/**
 * Run `redraw`, which replaces what `container` holds, and give the keyboard back to the
 * control that had it (the same kind of element with the same name), so that a redrawn
 * view does not send a keyboard user back to the top of the page.
 */
export async function keepingFocus(container, redraw) {
  const had = container.contains(document.activeElement) ? document.activeElement : null;
  const name = had && (had.getAttribute("aria-label") || had.textContent);
  await redraw();
  if (!had || document.activeElement !== document.body) return;
  const again = [...container.querySelectorAll(had.tagName)].find(
    (node) => (node.getAttribute("aria-label") || node.textContent) === name && !node.disabled,
  );
  (again ?? container.querySelector("[data-focus-fallback]"))?.focus();
}
