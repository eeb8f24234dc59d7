// The console's shell: sign-in, the navigation by role, and the view named by the URL's
// fragment (#/log, #/aggregate/<id>?version=3 …). Each view is a module with a render().
import { anonymous, api, session } from "./api.js";
import { field, fill, h, problem } from "./dom.js";
import * as aggregate from "./views/aggregate.js";
import * as audit from "./views/audit.js";
import * as log from "./views/log.js";
import * as readModels from "./views/readmodels.js";
import * as shop from "./views/shop.js";

// Which roles each view is for. The API decides what is actually answered: a view opened
// without them still asks, and shows the refusal.
// In the order a sign-in picks the first it may open: an admin lands on the read models,
// although Audit also has a section for admins (a customer's personal data).
const VIEWS = {
  log: { module: log, title: "Log", roles: ["auditor"] },
  aggregate: { module: aggregate, title: "Aggregate", roles: ["auditor"] },
  "read-models": { module: readModels, title: "Read models", roles: ["admin"] },
  audit: { module: audit, title: "Audit", roles: ["auditor", "admin"] },
  shop: { module: shop, title: "Shop", roles: ["staff", "auditor", "admin"] },
};

const main = document.getElementById("view");
let leave = null; // what the current view must stop (a live tail, polling) when left

function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  const [name, ...rest] = path.split("/");
  return { name, args: rest.map(decodeURIComponent), params: new URLSearchParams(query) };
}

function firstView() {
  return Object.keys(VIEWS).find((name) => session.has(...VIEWS[name].roles));
}

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (!signedIn) return;
  const claims = session.claims() || {};
  document.getElementById("who-text").textContent =
    `${claims.sub ?? "?"} (${session.roles().join(", ") || "no roles"})`;
  for (const item of document.querySelectorAll("#nav li")) {
    item.hidden = !session.has(...item.dataset.roles.split(" "));
  }
}

// After a sign-in (token or password): the view asked for, or the first the roles may open.
function signedIn() {
  const wanted = VIEWS[route().name] ? route().name : firstView();
  if (wanted && location.hash !== `#/${wanted}`) location.hash = `#/${wanted}`;
  else render();
}

function tokenForm(status) {
  const token = h("textarea", {
    id: "token", name: "token", required: true, autocomplete: "off", spellcheck: "false",
    "aria-describedby": "token-help",
  });
  const form = h(
    "form",
    {
      "aria-labelledby": "token-title",
      onsubmit: async (event) => {
        event.preventDefault();
        session.signIn(token.value.trim());
        try {
          // Any valid token may read the catalogue: a cheap check that the server takes it.
          await api("/api/products", { params: { limit: 1 } });
        } catch (error) {
          session.signOut();
          fill(status, problem(error));
          return;
        }
        signedIn();
      },
    },
    field("Bearer token", token),
    h("button", { type: "submit" }, "Sign in"),
  );
  return h("section", { class: "sign-in" },
    h("h2", { id: "token-title" }, "With a token"),
    h("p", { id: "token-help" },
      "Paste a token from ", h("code", {}, "eventshop token --role auditor"),
      " (or staff, admin), run where the server's key is."),
    form);
}

// The configured admin's login (EVENTSHOP_ADMIN_USER): its token is kept like a pasted one.
function passwordForm(status) {
  const user = h("input", { id: "username", name: "username", required: true, autocomplete: "username" });
  const password = h("input", {
    id: "password", name: "password", type: "password", required: true,
    autocomplete: "current-password",
  });
  const form = h(
    "form",
    {
      "aria-labelledby": "password-title",
      onsubmit: async (event) => {
        event.preventDefault();
        let answer;
        try {
          answer = await anonymous("/api/auth/login", {
            method: "POST", body: { username: user.value, password: password.value },
          });
        } catch (error) {
          password.value = "";
          fill(status, h("p", { class: "problem", role: "alert" }, error.problem?.detail || error.message));
          return;
        }
        session.signIn(answer.token);
        signedIn();
      },
    },
    field("User name", user),
    field("Password", password),
    h("button", { type: "submit" }, "Sign in as admin"),
  );
  return h("section", { class: "sign-in", id: "password-sign-in" },
    h("h2", { id: "password-title" }, "As the admin"),
    h("p", {}, "The admin this server is configured with signs in with a password."),
    form);
}

function signInForm(message) {
  const status = h("div", { "aria-live": "polite" }, message && h("p", { class: "notice" }, message));
  const ways = h("div", { class: "sign-in-ways" }, tokenForm(status));
  // Offered only where an admin is configured; without one the token is the way in.
  anonymous("/api/auth/login").then(
    (options) => {
      if (options.password) ways.append(passwordForm(status));
      else ways.append(h("p", { class: "notice", id: "no-password-sign-in" },
        "No admin is configured for a password sign-in here: use a token."));
    },
    () => {},
  );
  return [
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "Your token is kept for this browser tab only."),
    ways,
    status,
  ];
}

async function render() {
  if (leave) {
    leave();
    leave = null;
  }
  const signedIn = Boolean(session.token());
  showChrome(signedIn);
  if (!signedIn) {
    fill(main, signInForm());
    document.getElementById("token").focus();
    return;
  }
  const { name, args, params } = route();
  const view = VIEWS[name] ? name : firstView();
  if (!VIEWS[name]) {
    if (view) location.replace(`#/${view}`);
    else fill(main, h("h1", {}, "Nothing to show"), h("p", { class: "notice" },
      "Your roles may open none of the console's views: it is for auditors, staff and admins."));
    return;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#/${view}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const { module, title, roles } = VIEWS[view];
  document.title = `${title} · eventshop console`;
  const heading = h("h1", { tabindex: "-1" }, title);
  const body = h("div");
  const warning = session.has(...roles)
    ? null
    : h("p", { class: "notice", id: "not-for-you" },
        `This view is for ${roles.join(" or ")}; your token's roles (${session.roles().join(", ") || "none"})`
        + " are not enough. The API's answers below say the same.");
  fill(main, heading, warning, body);
  heading.focus();
  leave = module.render(body, { args, params }) || null;
}

function onSessionEnded(event) {
  // A call answered 401 (the token expired, or the key changed): back to the sign-in.
  if (event.reason?.status === 401) {
    session.signOut();
    showChrome(false);
    fill(main, signInForm("Your session ended: the API no longer takes that token. Sign in again."));
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  location.hash = "";
  render();
});
window.addEventListener("hashchange", render);
// The link to the view already shown reloads it (and takes the keyboard to its heading).
document.getElementById("nav").addEventListener("click", (event) => {
  const link = event.target.closest("a");
  if (link && link.getAttribute("href") === location.hash) render();
});
window.addEventListener("unhandledrejection", onSessionEnded);
render();
