// Audit: an inclusion proof. One event is in the log a signed receipt covers: the event's
// link (from its stored bytes and the link before it) is a leaf, and its audit path leads
// up to the tree root the receipt signs. The server checks it with its trusted keys and
// says whether it holds; the answer is shown whole, so it can be kept and checked
// offline (`eventshop audit check-proof`).
import { api } from "../api.js";
import { aggregateLink, announce, field, fill, h, problem, when } from "../dom.js";

const short = (hex) => (hex ? `${hex.slice(0, 16)}…` : "—");

function verdict(proof) {
  const tone = proof.holds ? "ok" : "bad";
  return h("div", { class: `verdict ${tone}`, id: "proof-verdict", "data-holds": String(proof.holds), role: "status" },
    h("span", { class: "verdict-mark", "aria-hidden": "true" }, proof.holds ? "✓" : "✗"),
    h("span", {}, h("strong", {}, proof.holds ? "Holds" : "Does not hold"), `: ${proof.detail}`));
}

// The leaf's place among the tree's leaves, drawn: where in the signed log the event is.
function placement(proof) {
  const mark = h("span", { class: "leaf-mark" });
  // Placed from script: the page's policy allows no inline style attribute.
  mark.style.left = `${(proof.leaf_index / Math.max(proof.tree_size - 1, 1)) * 100}%`;
  return h("span", { class: "leaf-bar", "aria-hidden": "true" }, mark);
}

function pathList(proof) {
  if (!proof.audit_path.length) return h("p", { class: "muted" }, "Empty: the tree has this one leaf.");
  return h("ol", { class: "audit-path", id: "proof-path" },
    proof.audit_path.map((hash, level) => h("li", {},
      h("span", { class: "muted" }, `level ${level + 1}: `), h("code", {}, hash))));
}

function receiptList(receipt) {
  return h("dl", { class: "facts", id: "proof-receipt" },
    h("dt", {}, "Position"), h("dd", {}, receipt.position),
    h("dt", {}, "Signed (UTC)"), h("dd", {}, when(receipt.time)),
    h("dt", {}, "Key"), h("dd", {}, h("code", {}, receipt.key_id)),
    h("dt", {}, "Tree size"), h("dd", {}, receipt.tree_size ?? "— (made before proofs)"),
    h("dt", {}, "Tree root"), h("dd", {}, h("code", {}, receipt.tree_root ?? "—")),
    h("dt", {}, "Link"), h("dd", {}, h("code", {}, receipt.link)),
    h("dt", {}, "Signature"), h("dd", {}, h("code", {}, receipt.signature)));
}

function shown(proof) {
  const event = proof.event;
  const sameRoot = proof.receipt.tree_root && proof.root === proof.receipt.tree_root;
  return [
    verdict(proof),
    h("dl", { class: "facts", id: "proof-facts" },
      h("dt", {}, "Event"), h("dd", {}, `${event.position}: ${event.type} v${event.version} of `,
        aggregateLink(event.aggregate_id, short(event.aggregate_id), event.version)),
      h("dt", {}, "Leaf index"), h("dd", { id: "proof-leaf" }, proof.leaf_index),
      h("dt", {}, "Tree size"), h("dd", { id: "proof-size" }, proof.tree_size),
      h("dt", {}, "Where"), h("dd", {}, placement(proof),
        h("span", { class: "muted" }, ` leaf ${proof.leaf_index} of ${proof.tree_size}`)),
      h("dt", {}, "Link before"), h("dd", {}, h("code", {}, proof.previous_link)),
      h("dt", {}, "Event's link (leaf)"), h("dd", {}, h("code", {}, event.link ?? "none stored")),
      h("dt", {}, "Root"), h("dd", {}, h("code", { id: "proof-root" }, proof.root), " ",
        h("span", { class: sameRoot ? "ok" : "bad" },
          sameRoot ? "the root the receipt signed" : "not the root the receipt signed"))),
    h("h3", {}, `Audit path (${proof.audit_path.length} hash${proof.audit_path.length === 1 ? "" : "es"})`),
    pathList(proof),
    h("h3", {}, "Receipt"),
    receiptList(proof.receipt),
  ];
}

/** The inclusion-proof section; `chooser.receipt(n)` puts a receipt's position in its form. */
export function proofSection() {
  const position = h("input", { name: "position", type: "number", min: 1, required: true });
  const receipt = h("input", { name: "receipt", type: "number", min: 1, placeholder: "the newest" });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", {
    "aria-label": "Prove an event's inclusion",
    onsubmit: async (event) => {
      event.preventDefault();
      fill(out, h("p", { class: "muted" }, "Computing the proof…"));
      try {
        const proof = await api(`/api/audit/events/${position.value}/proof`, {
          params: { receipt: receipt.value },
        });
        fill(out, shown(proof));
        announce(proof.holds ? "The proof holds" : "The proof does not hold");
      } catch (error) {
        fill(out, problem(error));
      }
    },
  }, field("Event position", position), field("Receipt position", receipt),
  h("button", { type: "submit" }, "Get the proof"));
  const section = h("section", { "aria-labelledby": "proof-title" },
    h("h2", { id: "proof-title" }, "Inclusion proof"),
    h("p", {}, "Shows that one event is in the log a signed receipt covers, with a handful of"
      + " hashes instead of the whole log: its link is a leaf of the Merkle tree, and the audit"
      + " path leads from it to the root the receipt signed. Keep the answer and check it"
      + " offline with ", h("code", {}, "eventshop audit check-proof"), "."),
    form, out);
  return {
    section,
    receipt(at) {
      receipt.value = at;
      position.focus();
    },
  };
}
