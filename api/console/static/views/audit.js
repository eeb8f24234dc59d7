// Audit: the hash chain's head (a digest to keep), verification of a digest kept before,
// and the log's export as NDJSON.
import { api, download } from "../api.js";
import { fill, field, h, problem, when } from "../dom.js";

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
  // Asked first, so that a caller the API refuses sees why before filling in a form.
  api("/api/audit/events", { params: { limit: 1 } }).then(
    () => fill(root, digestSection(), verifySection(), exportSection()),
    (error) => fill(root, problem(error)),
  );
  return null;
}
