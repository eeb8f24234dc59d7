// Read models: each one's state, position and lag; a blue/green rebuild with its progress
// and the comparison of the new copy with the live one; parked events, retried or skipped.
// Under them, the outbound channels of the integration events (deliveries.js).
import { api, ApiError } from "../api.js";
import { announce, fill, h, keepingFocus, problem, table, when } from "../dom.js";
import { deliveriesTable, showParkedDeliveries } from "./deliveries.js";

const IDLE_POLL_MS = 3000;
const BUSY_POLL_MS = 400;

function comparison(last) {
  if (!last) return h("span", { class: "muted" }, "none yet");
  if (last.error) return h("span", { class: "bad" }, `failed: ${last.error}`);
  const equal = last.comparison?.equal;
  const tables = Object.entries(last.comparison?.tables ?? {})
    .map(([name, t]) => `${name} ${t.live_rows}→${t.new_rows} rows`).join(", ");
  return h("span", { class: "last-rebuild" },
    `${when(last.finished_at)}: ${last.events} events in ${last.seconds} s; `,
    equal === undefined ? "" : h("span", { class: equal ? "ok" : "bad" },
      equal ? "new copy equal to the live one" : "new copy differs from the live one"),
    tables ? ` (${tables})` : "");
}

// Counted in events, not positions: PostgreSQL's positions have gaps, so a bar of
// positions would disagree with the events the rebuild reports when it ends.
function progress(model) {
  const run = model.rebuild;
  if (!run) return model.state;
  const label = `Rebuild of ${model.name}`;
  // No total yet (the rebuild has not seen the log's head): a bar that says so.
  const bar = run.total
    ? h("progress", { max: run.total, value: Math.min(run.events, run.total), "aria-label": label })
    : h("progress", { "aria-label": label });
  const eta = run.eta_seconds ? `, about ${Math.ceil(run.eta_seconds)} s left` : "";
  return h("span", { class: "rebuild-progress" },
    "rebuilding ", bar,
    ` ${run.events}/${run.total || "?"} events (${run.phase}${eta})`);
}

export function render(root) {
  const status = h("p", { class: "muted", "aria-live": "polite" });
  const list = h("div");
  const outbound = h("div");
  const parked = h("section", { "aria-live": "polite" });
  fill(root, status, list, outbound, parked);
  let timer = null;
  let stopped = false;
  const watching = new Set(); // rebuilds started here, announced when they end

  async function rebuild(name, button) {
    button.disabled = true;
    try {
      await api(`/api/projections/${name}/rebuild`, { method: "POST" });
      watching.add(name);
      announce(`Rebuild of ${name} started`);
    } catch (error) {
      fill(status, problem(error));
    }
    refresh();
  }

  async function showParked(name) {
    try {
      const answer = await api(`/api/projections/${name}/parked`);
      const act = (position, what) => async () => {
        if (what === "skip" && !confirm(`Skip event ${position} for ${name}? It is never applied.`)) return;
        try {
          const done = await api(`/api/projections/${name}/parked/${position}/${what}`, { method: "POST" });
          announce(`Event ${position} ${done.outcome}; ${done.parked} still parked`);
        } catch (error) {
          fill(parked, problem(error));
          return;
        }
        showParked(name);
        refresh();
      };
      fill(parked, h("h2", {}, `Parked events of ${name}`), answer.items.length
        ? table(`${answer.items.length} parked`, [
          ["Position", (p) => p.position, { num: true }],
          ["Type", (p) => p.type],
          ["Error", (p) => p.error],
          ["Parked (UTC)", (p) => when(p.parked_at)],
          ["Retries", (p) => p.retries, { num: true }],
          ["", (p) => h("div", { class: "controls" },
            h("button", { type: "button", onclick: act(p.position, "retry") }, "Retry"),
            h("button", { type: "button", class: "secondary", onclick: act(p.position, "skip") }, "Skip"))],
        ], answer.items)
        : h("p", { class: "notice" }, "None: every event was applied."));
    } catch (error) {
      fill(parked, problem(error));
    }
  }

  async function refresh() {
    clearTimeout(timer);
    let busy = false;
    try {
      const [{ items }, deliveries] = await Promise.all([
        api("/api/projections"),
        api("/api/deliveries").catch((error) => error),
      ]);
      if (stopped) return;
      busy = items.some((m) => m.rebuild);
      for (const model of items) {
        if (watching.has(model.name) && !model.rebuild) {
          watching.delete(model.name);
          announce(`Rebuild of ${model.name} finished`);
        }
      }
      // Redrawn every few seconds: keep the keyboard where it was.
      keepingFocus(list, () => fill(list, table("Read models", [
        ["Name", (m) => m.name],
        ["State", progress],
        ["Position / head", (m) => `${m.position} / ${m.head}`, { num: true }],
        ["Lag", (m) => m.lag, { num: true }],
        ["Events/s", (m) => m.events_per_second, { num: true }],
        ["Version", (m) => `${m.version}${m.stored_version !== m.version ? ` (tables: ${m.stored_version})` : ""}`],
        ["Last rebuild", (m) => comparison(m.last_rebuild)],
        ["Actions", (m) => h("div", { class: "controls" },
          h("button", { type: "button", disabled: Boolean(m.rebuild), "aria-label": `Rebuild ${m.name}`,
            onclick: (event) => rebuild(m.name, event.currentTarget) }, "Rebuild"),
          h("button", { type: "button", class: "secondary", "aria-label": `Parked events of ${m.name}`,
            onclick: () => showParked(m.name) }, `Parked (${m.parked})`))],
      ], items, (m) => ({ "data-name": m.name, "data-state": m.state }))));
      keepingFocus(outbound, () => fill(outbound, deliveries instanceof Error
        ? problem(deliveries)
        : deliveriesTable(deliveries.items, (c) => showParkedDeliveries(parked, c, refresh))));
      status.textContent = `Updated ${when(new Date().toISOString())}.`;
    } catch (error) {
      fill(list, problem(error));
      if (error instanceof ApiError && error.status < 500) return; // refused: asking again won't help
    }
    if (!stopped) timer = setTimeout(refresh, busy || watching.size ? BUSY_POLL_MS : IDLE_POLL_MS);
  }

  refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
