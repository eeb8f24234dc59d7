// Aggregate: one aggregate's timeline (who, when, which request), its state at any version
// or moment, and what changed from the version before, highlighted. Found by id, by SKU
// (its Product and Stock) or, for orders, by customer.
import { api } from "../api.js";
import { aggregateLink, announce, fill, field, h, keepingFocus, problem, table, utc, when } from "../dom.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function finder(root, initial) {
  const kind = h(
    "select",
    { name: "kind" },
    h("option", { value: "id" }, "Aggregate id (cart, order …)"),
    h("option", { value: "sku" }, "SKU (product, stock)"),
    h("option", { value: "customer" }, "Customer id (their orders)"),
  );
  const value = h("input", { name: "value", required: true, value: initial ?? "", size: 36 });
  const found = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    {
      "aria-label": "Find an aggregate",
      onsubmit: (event) => {
        event.preventDefault();
        find(kind.value, value.value.trim(), found);
      },
    },
    field("Find by", kind),
    field("Id, SKU or customer", value),
    h("button", { type: "submit" }, "Find"),
  );
  fill(root, form, found);
}

async function find(kind, value, out) {
  try {
    if (kind === "id") {
      if (!UUID.test(value)) throw new Error("an aggregate id is a UUID");
      location.hash = `#/aggregate/${value}`;
    } else if (kind === "sku") {
      const ids = await api(`/api/audit/skus/${encodeURIComponent(value.toUpperCase())}`);
      fill(out, h("ul", {},
        h("li", {}, aggregateLink(ids.product_id, `Product ${ids.sku}`)),
        h("li", {}, aggregateLink(ids.stock_id, `Stock ${ids.sku}`))));
    } else {
      const page = await api("/api/orders", { params: { customer_id: value, limit: 100 } });
      fill(out, page.items.length
        ? table(`Orders of ${value}`, [
          ["Order", (o) => aggregateLink(o.id)],
          ["Status", (o) => o.status],
          ["Placed (UTC)", (o) => when(o.placed_at)],
          ["Total", (o) => o.total, { num: true }],
        ], page.items)
        : h("p", { class: "notice" }, `No orders of customer ${value}.`));
    }
  } catch (error) {
    fill(out, problem(error));
  }
}

function shownValue(value) {
  if (value === undefined) return h("span", { class: "muted" }, "—");
  return h("code", {}, typeof value === "string" ? value : JSON.stringify(value));
}

/** Each attribute before and after, the changed ones marked (in words too, not only colour). */
function difference(before, after) {
  const names = [...new Set([...Object.keys(before ?? {}), ...Object.keys(after)])];
  const rows = names.map((name) => {
    const old = before?.[name];
    const now = after[name];
    return { name, old, now, changed: before !== null && JSON.stringify(old) !== JSON.stringify(now) };
  });
  return rows;
}

function timeline(history, chosen, choose) {
  return h(
    "ol",
    { class: "timeline", "aria-label": "Events, oldest first" },
    history.items.map((event) => {
      const who = event.metadata;
      return h(
        "li",
        { "aria-current": event.version === chosen ? "true" : null },
        h("button", { type: "button", onclick: () => choose(event.version) },
          `v${event.version} ${event.type}`),
        h("span", { class: "meta" }, when(event.timestamp), " · position ", event.position),
        h("span", { class: "meta" },
          "by ", who ? `${who.actor}${who.role ? ` (${who.role})` : ""}` : "unknown",
          who?.correlation_id ? [" · request ", h("code", {}, who.correlation_id)] : ""),
      );
    }),
  );
}

export function render(root, { args, params }) {
  const search = h("section", { "aria-label": "Find" });
  const shown = h("div");
  fill(root, search, shown);
  finder(search, args[0]);
  if (!args[0]) {
    api("/api/audit/events", { params: { limit: 1 } }).catch((error) => fill(shown, problem(error)));
    return null;
  }
  const id = args[0];
  let history = null;

  function choose(version, at) {
    return keepingFocus(shown, () => show(version, at));
  }

  async function show(version, at) {
    const side = shown.querySelector("#version-panel");
    try {
      const state = await api(`/api/audit/aggregates/${id}/state`, { params: at ? { at } : { version } });
      const before = state.version > 1
        ? await api(`/api/audit/aggregates/${id}/state`, { params: { version: state.version - 1 } })
        : null;
      draw(state.version);
      const event = history.items.find((e) => e.version === state.version);
      const rows = difference(before?.state ?? null, state.state);
      const changed = rows.filter((row) => row.changed).map((row) => row.name);
      fill(shown.querySelector("#version-panel"),
        h("h2", { id: "version-title", tabindex: "-1", "data-focus-fallback": "" }, `State at version ${state.version}`),
        h("p", { class: "muted" }, `as of ${when(state.modified_on)}`,
          before ? ` · changed since version ${before.version}: ${changed.join(", ") || "nothing"}` : " · the first version"),
        h("div", { class: "controls" },
          h("button", { type: "button", class: "secondary", disabled: state.version <= 1,
            onclick: () => choose(state.version - 1) }, "Previous version"),
          h("button", { type: "button", class: "secondary", disabled: state.version >= history.version,
            onclick: () => choose(state.version + 1) }, "Next version")),
        table(before ? `Difference from version ${before.version}` : "State", [
          ["Attribute", (r) => [r.name, r.changed ? h("span", { class: "visually-hidden" }, " (changed)") : ""]],
          [before ? `Version ${before.version}` : "", (r) => (before ? shownValue(r.old) : "")],
          [`Version ${state.version}`, (r) => shownValue(r.now)],
        ], rows, (r) => ({ class: r.changed ? "changed" : null, "data-attribute": r.name })),
        event && h("h2", {}, `Event ${event.type}`),
        event && h("pre", {}, JSON.stringify(event.data, null, 2)),
      );
      history_url(state.version);
      announce(`Version ${state.version}; changed: ${changed.join(", ") || "nothing"}`);
    } catch (error) {
      fill(side, problem(error));
    }
  }

  function history_url(version) {
    history && window.history.replaceState(null, "", `#/aggregate/${id}?version=${version}`);
  }

  function draw(chosen) {
    fill(shown.querySelector("#timeline"), timeline(history, chosen, (v) => choose(v)));
  }

  (async () => {
    try {
      history = await api(`/api/audit/aggregates/${id}/events`);
    } catch (error) {
      fill(shown, problem(error));
      return;
    }
    const at = h("input", { type: "datetime-local", step: 1, name: "at", required: true });
    fill(shown,
      h("h2", {}, `${history.aggregate_type} `, h("code", {}, id)),
      h("p", { class: "muted" }, `${history.items.length} events; now at version ${history.version}.`),
      h("form", {
        "aria-label": "State at a moment",
        // Times are shown to the second: a moment typed as shown means the end of that
        // second, so that it includes the events the timeline lists at it.
        onsubmit: (event) => { event.preventDefault(); choose(null, utc(at.value).replace("Z", ".999Z")); },
      }, field("State at a moment (UTC)", at), h("button", { type: "submit", class: "secondary" }, "Show")),
      h("div", { class: "split" },
        h("section", { id: "timeline", "aria-label": "Timeline" }),
        h("section", { id: "version-panel", "aria-labelledby": "version-title" })));
    const version = Number(params.get("version")) || history.version;
    draw(version);
    choose(Math.min(version, history.version));
  })();
  return null;
}
