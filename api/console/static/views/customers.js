// Audit, for admins: one customer's personal data. Its export (GDPR Art. 15/20: every
// e-mail and address the shop holds, and which events still hold them in plain text)
// and its erasure (Art. 17), asked twice: the customer's data key is destroyed, and
// there is no undo.
import { api, download } from "../api.js";
import { aggregateLink, announce, field, fill, h, problem, table, when } from "../dom.js";

// What a personal field reads as once erased (domain/personal.py).
const ERASED = "[erased]";

function value(text) {
  return text === ERASED ? h("span", { class: "erased" }, "erased") : text;
}

function address(a) {
  if (typeof a !== "object" || a === null) return value(a);
  if (Object.values(a).every((part) => part === ERASED)) return value(ERASED);
  return [a.name, a.line1, a.line2, [a.postal_code, a.city].filter(Boolean).join(" "), a.country]
    .filter(Boolean).join(", ");
}

function plainEvents(items, none) {
  if (!items.length) return h("p", { class: "muted", "data-still-plain": "0" }, none);
  return h("div", { "data-still-plain": items.length },
    h("p", { class: "bad" }, `${items.length === 1 ? "1 event still holds" : `${items.length} events still hold`}`
      + " personal data in plain text (stored before encryption; events are never rewritten):"),
    h("ul", { class: "plain-events" }, items.map((e) => h("li", {},
      aggregateLink(e.aggregate_id, `${e.aggregate_id} v${e.version}`, e.version)))));
}

function exported(data) {
  return [
    h("p", { id: "customer-status", "data-erased": String(data.erased) },
      data.erased
        ? h("span", { class: "erased" }, "erased")
        : h("span", {}, "personal data held"),
      ` · ${data.erasures} erasure${data.erasures === 1 ? "" : "s"} so far`),
    data.orders.length
      ? table(`Personal data in ${data.orders.length} order${data.orders.length === 1 ? "" : "s"}`, [
        ["Order", (o) => aggregateLink(o.order_id, `${o.order_id.slice(0, 8)}…`)],
        ["Placed (UTC)", (o) => when(o.placed_at)],
        ["E-mail", (o) => value(o.email)],
        ["Shipping address", (o) => address(o.shipping_address)],
      ], data.orders, (o) => ({ "data-order": o.order_id }))
      : h("p", { class: "notice" }, "No order holds personal data of this customer."),
    plainEvents(data.still_plain, "None of its events holds personal data in plain text."),
  ];
}

function erasureAnswer(answer) {
  return h("div", { id: "erasure-answer" },
    h("p", { class: "ok", role: "status" }, answer.already_erased
      ? `${answer.customer_id} was erased before and nothing was stored since: nothing new recorded.`
      : `${answer.customer_id} erased: the data key is destroyed; erasure ${answer.erasures},`
        + ` recorded at position ${answer.position}.`),
    plainEvents(answer.still_plain, "No event of this customer holds personal data in plain text."));
}

/** The customer section of the Audit view (for admins: the API refuses anyone else). */
export function customerSection() {
  const id = h("input", { name: "customer", required: true, autocomplete: "off", spellcheck: "false" });
  const exportOut = h("div", { "aria-live": "polite" });
  const erasureOut = h("div", { "aria-live": "polite" });

  async function show(customer, minPosition) {
    fill(exportOut, h("p", { class: "muted" }, "Reading…"));
    fill(erasureOut);
    try {
      const data = await api(`/api/customers/${encodeURIComponent(customer)}/data`, {
        params: { min_position: minPosition },
      });
      fill(exportOut, h("h3", {}, `Data of ${customer}`), exported(data),
        h("div", { class: "controls" },
          h("button", { type: "button", class: "secondary", onclick: () => save(customer) }, "Download as JSON"),
          h("button", { type: "button", class: "danger", onclick: () => ask(customer) },
            `Erase ${customer}'s personal data…`)));
    } catch (error) {
      fill(exportOut, problem(error));
    }
  }

  async function save(customer) {
    try {
      await download(`/api/customers/${encodeURIComponent(customer)}/data`, {
        filename: `personal-data-${customer}.json`,
      });
    } catch (error) {
      fill(erasureOut, problem(error));
    }
  }

  // The confirmation step: the customer's id typed again, as a second, deliberate act.
  function ask(customer) {
    const again = h("input", { name: "confirm", autocomplete: "off", spellcheck: "false" });
    const erase = h("button", { type: "submit", class: "danger" }, "Erase for good");
    const form = h("form", {
      class: "confirm", "aria-label": "Confirm the erasure",
      onsubmit: async (event) => {
        event.preventDefault();
        if (again.value.trim() !== customer) {
          fill(note, h("p", { class: "problem", role: "alert" }, `Type ${customer} to confirm.`));
          return;
        }
        erase.disabled = true;
        fill(note, h("p", { class: "muted" }, "Erasing (it waits until no process still holds the key)…"));
        try {
          const answer = await api(`/api/customers/${encodeURIComponent(customer)}/erasure`, { method: "POST" });
          announce(`${customer} erased`);
          await show(customer, answer.position);
          fill(erasureOut, erasureAnswer(answer));
        } catch (error) {
          erase.disabled = false;
          fill(note, problem(error));
        }
      },
    },
    h("p", { class: "warning" }, `This destroys ${customer}'s data key: their e-mail and shipping`
      + " address will read as erased in every event, history, export and read model, for good."
      + " Events stored before encryption keep their plain text; the answer lists them."),
    field(`Type ${customer} to confirm`, again), erase,
    h("button", { type: "button", class: "secondary", onclick: () => fill(erasureOut) }, "Cancel"));
    const note = h("div", { "aria-live": "polite" });
    fill(erasureOut, form, note);
    again.focus();
  }

  const form = h("form", {
    "aria-label": "Look up a customer",
    onsubmit: (event) => {
      event.preventDefault();
      show(id.value.trim());
    },
  }, field("Customer id", id), h("button", { type: "submit" }, "Show their data"));
  return h("section", { "aria-labelledby": "customer-title", id: "customer-data" },
    h("h2", { id: "customer-title" }, "A customer's personal data"),
    h("p", {}, "What the shop holds about one customer (their id is their tokens' subject), as"
      + " they may ask for it, and its erasure. For admins."),
    form, exportOut, erasureOut);
}
