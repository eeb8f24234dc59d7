// Shop: orders by status, low stock, and the sales per day drawn as a bar chart.
import { api, session } from "../api.js";
import { aggregateLink, fill, field, h, problem, s, table, when } from "../dom.js";

const STATUSES = ["placed", "paid", "shipped", "delivered", "cancelled"];

function ordersSection() {
  const status = h("select", { name: "status" },
    h("option", { value: "" }, "any"), STATUSES.map((name) => h("option", { value: name }, name)));
  const out = h("div");
  async function load() {
    try {
      const page = await api("/api/orders", { params: { status: status.value, limit: 20 } });
      // Only auditors may open a timeline; others see the id.
      const id = (o) => (session.has("auditor") ? aggregateLink(o.id, o.id.slice(0, 8)) : h("code", {}, o.id.slice(0, 8)));
      fill(out, page.items.length
        ? table(`Newest ${page.items.length} orders${status.value ? ` ${status.value}` : ""}`, [
          ["Order", id],
          ["Customer", (o) => o.customer_id],
          ["Status", (o) => o.status],
          ["Placed (UTC)", (o) => when(o.placed_at)],
          ["Units", (o) => o.units, { num: true }],
          ["Total", (o) => o.total, { num: true }],
        ], page.items)
        : h("p", { class: "notice" }, "No such orders."));
    } catch (error) {
      fill(out, problem(error));
    }
  }
  status.addEventListener("change", load);
  load();
  return h("section", { "aria-labelledby": "orders-title" },
    h("h2", { id: "orders-title" }, "Orders by status"),
    h("div", { class: "controls" }, field("Status", status)), out);
}

function stockSection() {
  const below = h("input", { name: "below", type: "number", min: 0, value: 5 });
  const out = h("div");
  async function load() {
    try {
      const page = await api("/api/stock", { params: { below: below.value, limit: 100 } });
      fill(out, page.items.length
        ? table(`SKUs with fewer than ${below.value} available`, [
          ["SKU", (l) => l.sku],
          ["On hand", (l) => l.on_hand, { num: true }],
          ["Reserved", (l) => l.reserved, { num: true }],
          ["Available", (l) => l.available, { num: true }],
        ], page.items)
        : h("p", { class: "notice" }, `Every SKU has at least ${below.value} available.`));
    } catch (error) {
      fill(out, problem(error));
    }
  }
  const form = h("form", { "aria-label": "Low stock", onsubmit: (e) => { e.preventDefault(); load(); } },
    field("Fewer than (units available)", below), h("button", { type: "submit" }, "Show"));
  load();
  return h("section", { "aria-labelledby": "stock-title" },
    h("h2", { id: "stock-title" }, "Low stock"), form, out);
}

/** Revenue per day as bars; each bar says its day, revenue and orders (title, for pointers and readers). */
export function salesChart(days) {
  const width = 640;
  const height = 220;
  const pad = { left: 56, right: 8, top: 12, bottom: 40 };
  const most = Math.max(...days.map((d) => Number(d.revenue)), 1);
  const step = (width - pad.left - pad.right) / days.length;
  const bar = Math.max(Math.min(step * 0.7, 48), 2);
  const y = (value) => pad.top + (height - pad.top - pad.bottom) * (1 - value / most);
  const label = `Revenue per day, ${days[0].day} to ${days[days.length - 1].day}; highest ${most.toFixed(2)}`;
  const every = Math.ceil(days.length / 8); // at most 8 day labels under the bars
  return s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    s("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }),
    [0, 0.5, 1].map((share) => s("text", { x: pad.left - 6, y: y(most * share) + 4, "text-anchor": "end" },
      (most * share).toFixed(0))),
    days.map((d, i) => {
      const x = pad.left + i * step + (step - bar) / 2;
      return s("g", {},
        s("rect", { class: "bar-rect", x, y: y(Number(d.revenue)), width: bar,
          height: Math.max(y(0) - y(Number(d.revenue)), 0), "data-day": d.day },
        s("title", {}, `${d.day}: revenue ${d.revenue}, ${d.orders} orders, ${d.units} units`)),
        i % every === 0 ? s("text", { x: x + bar / 2, y: height - pad.bottom + 16, "text-anchor": "middle" },
          d.day.slice(5)) : null);
    }));
}

function salesSection() {
  const from = h("input", { name: "from", type: "date" });
  const to = h("input", { name: "to", type: "date" });
  const out = h("div");
  async function load() {
    try {
      const report = await api("/api/reports/sales", { params: { from: from.value, to: to.value } });
      const total = report.days.reduce((sum, d) => sum + Number(d.revenue), 0);
      fill(out, report.days.length
        ? [salesChart(report.days),
          h("p", { class: "muted" }, `${report.days.length} days with sales; revenue ${total.toFixed(2)}`
            + " (cancelled orders left out).")]
        : h("p", { class: "notice" }, "No sales in that range."));
    } catch (error) {
      fill(out, problem(error));
    }
  }
  const form = h("form", { "aria-label": "Sales range", onsubmit: (e) => { e.preventDefault(); load(); } },
    field("From day", from), field("To day", to), h("button", { type: "submit" }, "Show"));
  load();
  return h("section", { "aria-labelledby": "sales-title" },
    h("h2", { id: "sales-title" }, "Sales per day"), form, out);
}

export function render(root) {
  fill(root, salesSection(), stockSection(), ordersSection());
  return null;
}
