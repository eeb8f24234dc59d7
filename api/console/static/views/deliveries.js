// The outbound channels of the integration events, shown under the read models: the
// JetStream publisher and each webhook subscription, with state, lag, last success and
// failure; a webhook's parked deliveries, sent again on request.
import { api } from "../api.js";
import { announce, fill, h, problem, table, when } from "../dom.js";

function seconds(value) {
  return value >= 10 ? `${Math.round(value)} s` : `${value.toFixed(1)} s`;
}

function failure(c) {
  if (!c.last_failure_at) return h("span", { class: "muted" }, "none");
  const recovered = c.last_success_at && c.last_success_at > c.last_failure_at;
  return h("span", { class: recovered ? "muted" : "bad", title: c.last_error || "" },
    `${when(c.last_failure_at)}: ${c.last_error || "failed"}`);
}

/** The channels' table; `showParked(channel)` lists a webhook's parked deliveries. */
export function deliveriesTable(items, showParked) {
  if (!items.length) return h("p", { class: "notice" }, "No outbound channel: no NATS server configured, no webhook subscribed.");
  return table("Deliveries", [
    ["Channel", (c) => h("span", {}, c.channel === "jetstream" ? "JetStream" : "Webhook",
      h("br"), h("span", { class: "muted mono" }, c.target || c.name))],
    ["State", (c) => c.state],
    ["Position / head", (c) => `${c.position} / ${c.head}`, { num: true }],
    ["Lag", (c) => `${c.lag_events} (${seconds(c.lag_seconds)})`, { num: true }],
    ["Last success", (c) => when(c.last_success_at)],
    ["Last failure", failure],
    ["Parked", (c) => (c.subscription_id
      ? h("button", { type: "button", class: "secondary", "aria-label": `Parked deliveries of ${c.name}`,
        onclick: () => showParked(c) }, `Parked (${c.parked})`)
      : c.parked), { num: true }],
  ], items, (c) => ({ "data-name": c.name, "data-state": c.state }));
}

/** A webhook's parked deliveries in `section`, each with a button to send it again. */
export async function showParkedDeliveries(section, channel, refresh) {
  const base = `/api/webhooks/${channel.subscription_id}/deliveries`;
  try {
    const answer = await api(base, { params: { status: "parked" } });
    const redeliver = (id) => async () => {
      try {
        await api(`${base}/${id}/redeliver`, { method: "POST" });
        announce(`Delivery ${id} will be sent again`);
      } catch (error) {
        fill(section, problem(error));
        return;
      }
      showParkedDeliveries(section, channel, refresh);
      refresh();
    };
    fill(section, h("h2", {}, `Parked deliveries of ${channel.target}`), answer.items.length
      ? table(`${answer.items.length} parked`, [
        ["Position", (d) => d.position, { num: true }],
        ["Type", (d) => d.type],
        ["Attempts", (d) => d.attempts, { num: true }],
        ["Last error", (d) => d.last_error || `HTTP ${d.last_status}`],
        ["Updated (UTC)", (d) => when(d.updated_at)],
        ["", (d) => h("button", { type: "button", onclick: redeliver(d.id) }, "Redeliver")],
      ], answer.items)
      : h("p", { class: "notice" }, "None: every delivery went through."));
  } catch (error) {
    fill(section, problem(error));
  }
}
