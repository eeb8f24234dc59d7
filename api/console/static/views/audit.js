// Audit: verification of the log against its links and signed receipts, the receipts,
// an event's inclusion proof (proof.js), the hash chain's head (a digest to keep) and a
// digest kept before, the export; for admins, a customer's personal data (customers.js).
import { api, download, lines, session } from "../api.js";
import { fill, field, h, problem, table, when } from "../dom.js";
import { customerSection } from "./customers.js";
import { proofSection } from "./proof.js";

// How each result of /api/audit/verify is said, and whether it is good news.
const RESULTS = {
  verified: ["ok", "Verified"],
  unanchored: ["bad", "Unanchored"],
  tampered: ["bad", "Tampered"],
  "bad receipt": ["bad", "Bad receipt"],
};

function verificationSection() {
  const button = h("button", { type: "button" }, "Verify the log");
  const bar = h("progress", { "aria-label": "Verification", hidden: true });
  const out = h("div", { "aria-live": "polite" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    bar.hidden = false;
    bar.removeAttribute("value");
    fill(out, h("p", { class: "muted" }, "Reading the log…"));
    try {
      for await (const line of lines("/api/audit/verify")) {
        if (line.progress) {
          fill(out, h("p", { class: "muted" },
            `Checked ${line.progress.events} events, up to position ${line.progress.position}…`));
        } else if (line.result) {
          const r = line.result;
          const [tone, word] = RESULTS[r.status] ?? ["bad", r.status];
          fill(out,
            h("p", { class: tone, id: "verify-status", "data-status": r.status }, `${word}: ${r.detail}`),
            h("p", { class: "muted" },
              `${r.events} events checked up to position ${r.upto}; verified up to ${r.verified_upto}`
              + ` by ${r.anchors} anchor${r.anchors === 1 ? "" : "s"}.`));
        }
      }
    } catch (error) {
      fill(out, problem(error));
    } finally {
      button.disabled = false;
      bar.hidden = true;
    }
  });
  return h("section", { "aria-labelledby": "verification-title" },
    h("h2", { id: "verification-title" }, "Verification"),
    h("p", {}, "Recomputes every event's link and checks it against the stored links and the"
      + " signed receipts. It only reads."),
    h("div", { class: "controls" }, button, bar), out);
}

function receiptsSection(useForProof) {
  const out = h("div");
  async function load() {
    try {
      // The newest receipts matter most; the route lists them in log order, 500 at most.
      const page = await api("/api/audit/receipts", { params: { limit: 500 } });
      const newest = page.items.slice(-10).reverse();
      fill(out, newest.length
        ? table(`The ${newest.length} newest of ${page.items.length}${page.next_cursor ? "+" : ""} receipts`, [
          ["Position", (r) => r.position, { num: true }],
          ["Signed (UTC)", (r) => when(r.time)],
          ["Key", (r) => h("code", {}, r.key_id)],
          ["Link", (r) => h("code", {}, `${r.link.slice(0, 16)}…`)],
          ["Tree size", (r) => r.tree_size ?? "—", { num: true }],
          ["", (r) => (r.tree_size
            ? h("button", { type: "button", class: "secondary", "aria-label": `Prove against the receipt at ${r.position}`,
              onclick: () => useForProof(r.position) }, "Prove against it")
            : null)],
        ], newest)
        : h("p", { class: "notice" }, "No receipt yet."));
    } catch (error) {
      fill(out, problem(error));
    }
  }
  const sign = h("button", { type: "button", class: "secondary" }, "Sign a receipt now");
  sign.addEventListener("click", async () => {
    try {
      await api("/api/audit/receipts", { method: "POST" });
    } catch (error) {
      fill(out, problem(error));
      return;
    }
    load();
  });
  load();
  return h("section", { "aria-labelledby": "receipts-title" },
    h("h2", { id: "receipts-title" }, "Receipts"),
    h("p", {}, "Signed statements of the log's head at a moment (Ed25519); keep copies away from"
      + " the database."),
    sign, out);
}

function digestSection() {
  const out = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "button" }, "Compute the digest now");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const digest = await api("/api/audit/digest");
      fill(out, h("dl", {},
        h("dt", {}, "Up to position"), h("dd", { id: "digest-upto" }, digest.upto),
        h("dt", {}, "Events covered"), h("dd", {}, digest.events),
        h("dt", {}, "Chain head (SHA-256)"), h("dd", {}, h("code", { id: "digest-head" }, digest.head))),
        h("p", { class: "muted" }, `Computed ${when(new Date().toISOString())}. Keep the head and the`
          + " position: verifying them later proves nothing up to that position was changed."));
    } catch (error) {
      fill(out, problem(error));
    } finally {
      button.disabled = false;
    }
  });
  return h("section", { "aria-labelledby": "digest-title" },
    h("h2", { id: "digest-title" }, "Chain digest"),
    h("p", {}, "Every event is chained to the one before it by SHA-256; the head covers the whole log."),
    button, out);
}

function verifySection() {
  const upto = h("input", { name: "upto", type: "number", min: 0, required: true });
  const head = h("input", { name: "head", required: true, size: 64, pattern: "[0-9a-fA-F]{64}",
    autocomplete: "off", spellcheck: "false" });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", {
    "aria-label": "Verify a kept digest",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const now = await api("/api/audit/digest", { params: { upto: upto.value } });
        const same = now.head.toLowerCase() === head.value.trim().toLowerCase();
        fill(out, same
          ? h("p", { class: "ok", id: "verify-result" },
            `Verified: the log up to position ${now.upto} (${now.events} events) is as it was.`)
          : h("p", { class: "bad", id: "verify-result" },
            `Tampered or mistyped: the chain up to position ${now.upto} now ends in ${now.head}.`
            + " Run `eventshop audit verify` to find the first position that differs."));
      } catch (error) {
        fill(out, problem(error));
      }
    },
  }, field("Up to position", upto), field("Chain head kept then", head),
  h("button", { type: "submit" }, "Verify"));
  return h("section", { "aria-labelledby": "verify-title" },
    h("h2", { id: "verify-title" }, "Verify a kept digest"), form, out);
}

function exportSection() {
  const after = h("input", { name: "after", type: "number", min: 0, value: 0 });
  const until = h("input", { name: "until", type: "number", min: 0, placeholder: "the end" });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", {
    "aria-label": "Export the log",
    onsubmit: async (event) => {
      event.preventDefault();
      try {
        const bytes = await download("/api/audit/export", {
          params: { after: after.value, until: until.value },
          filename: "eventshop-log.ndjson",
        });
        fill(out, h("p", { class: "ok" }, `Downloaded eventshop-log.ndjson (${bytes} bytes).`));
      } catch (error) {
        fill(out, problem(error));
      }
    },
  }, field("After position", after), field("Up to position", until),
  h("button", { type: "submit" }, "Download the export"));
  return h("section", { "aria-labelledby": "export-title" },
    h("h2", { id: "export-title" }, "Export"),
    h("p", {}, "The log as NDJSON: one event a line, with the stored bytes, for archiving or"
      + " checking elsewhere."),
    form, out);
}

export function render(root) {
  // An admin's section needs no auditor's role; the API refuses anyone else its calls.
  const customers = session.has("admin") ? customerSection() : null;
  // Asked first, so that a caller the API refuses sees why before filling in a form.
  api("/api/audit/events", { params: { limit: 1 } }).then(
    () => {
      const proof = proofSection();
      fill(root, verificationSection(), receiptsSection(proof.receipt), proof.section,
        exportSection(), digestSection(), verifySection(), customers);
    },
    (error) => fill(root, customers && error.status === 403
      ? h("p", { class: "notice", id: "auditors-only" }, "Verification, receipts, proofs and the export"
        + " are for auditors: the API refused them to your roles.")
      : problem(error), customers),
  );
  return null;
}
