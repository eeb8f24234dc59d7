// Log: the global log, filtered (type, aggregate, time range), a page at a time, and a
// live tail that appends each new event as it is stored (SSE from /api/audit/live).
import { api, events } from "../api.js";
import { aggregateLink, announce, fill, field, h, problem, table, utc, when } from "../dom.js";

const COLUMNS = [
  ["Position", (e) => e.position, { num: true }],
  ["Time (UTC)", (e) => when(e.timestamp)],
  ["Type", (e) => e.type],
  ["Aggregate", (e) => aggregateLink(e.aggregate_id, e.aggregate_id.slice(0, 8), e.version)],
  ["Version", (e) => e.version, { num: true }],
  ["Who", (e) => (e.metadata ? `${e.metadata.actor}${e.metadata.role ? ` (${e.metadata.role})` : ""}` : "—")],
];

function matches(filters, item) {
  const type = filters.type;
  if (type && item.type !== type && !item.type.endsWith(`.${type}`)) return false;
  return !filters.aggregate_id || item.aggregate_id === filters.aggregate_id;
}

export function render(root, { params }) {
  const input = (name, attrs = {}) => h("input", { name, value: params.get(name) ?? "", ...attrs });
  const form = h(
    "form",
    { "aria-label": "Filter the log" },
    field("Event type", input("type", { placeholder: "Order.Paid or Paid" })),
    field("Aggregate id", input("aggregate_id", { placeholder: "UUID", size: 36 })),
    field("From (UTC)", input("from", { type: "datetime-local", step: 1 })),
    field("To (UTC)", input("to", { type: "datetime-local", step: 1 })),
    field("After position", input("after", { type: "number", min: 0 })),
    h("button", { type: "submit" }, "Show"),
  );
  const tail = h("button", { type: "button", class: "secondary", "aria-pressed": "false" }, "Live tail");
  const status = h("p", { class: "muted", "aria-live": "polite" });
  const results = h("div");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Next page");
  fill(root, form, h("div", { class: "controls" }, tail, status), results, more);

  let rows = [];
  let cursor = null;
  let filters = {};
  let stop = null;

  function draw() {
    fill(results, rows.length
      ? table(`Events ${rows[0].position}–${rows[rows.length - 1].position}`, COLUMNS, rows)
      : h("p", { class: "notice" }, "No events match."));
  }

  async function load(next) {
    try {
      const page = await api("/api/audit/events", {
        params: { ...filters, from: utc(filters.from), to: utc(filters.to), cursor: next, limit: 50 },
      });
      rows = next ? rows.concat(page.items) : page.items;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      draw();
      status.textContent = `${rows.length} events shown${cursor ? "; more after them" : ""}.`;
    } catch (error) {
      fill(results, problem(error));
      more.hidden = true;
    }
  }

  async function follow() {
    const aborter = new AbortController();
    stop = () => aborter.abort();
    tail.setAttribute("aria-pressed", "true");
    tail.textContent = "Stop live tail";
    status.textContent = "Following the log: new events are added at the end.";
    const after = rows.length ? rows[rows.length - 1].position : undefined;
    try {
      for await (const message of events("/api/audit/live", { params: { after }, signal: aborter.signal })) {
        const item = JSON.parse(message.data);
        if (!matches(filters, item)) continue;
        rows.push(item);
        draw();
        announce(`New event ${item.type} at position ${item.position}`);
      }
    } catch (error) {
      if (error.name !== "AbortError") fill(results, problem(error));
    }
  }

  function unfollow() {
    if (stop) stop();
    stop = null;
    tail.setAttribute("aria-pressed", "false");
    tail.textContent = "Live tail";
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    filters = Object.fromEntries(new FormData(form));
    // The filters go into the URL, so that a view of the log can be shared or reloaded.
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    history.replaceState(null, "", `#/log${query.size ? `?${query}` : ""}`);
    load(null);
  });
  more.addEventListener("click", () => load(cursor));
  tail.addEventListener("click", () => (stop ? unfollow() : follow()));
  filters = Object.fromEntries(new FormData(form));
  load(null);
  return unfollow;
}
