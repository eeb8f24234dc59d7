// The console's one way to reach the shop: the public JSON API, with the bearer token the
// user signed in with. The token lives in sessionStorage: gone when the tab is closed.
const KEY = "eventshop.token";

export const session = {
  token: () => sessionStorage.getItem(KEY),
  signIn: (token) => sessionStorage.setItem(KEY, token),
  signOut: () => sessionStorage.removeItem(KEY),
  // The token's claims, read (not checked: the API checks every call) to label the
  // user and to offer only the views its roles may open.
  claims() {
    const token = this.token();
    if (!token) return null;
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    } catch {
      return null;
    }
  },
  roles() {
    const roles = this.claims()?.roles;
    return Array.isArray(roles) ? roles : [];
  },
  has(...roles) {
    const held = this.roles();
    return roles.some((role) => held.includes(role));
  },
};

/** A refused or failed call: its status and RFC 9457 problem details. */
export class ApiError extends Error {
  constructor(status, problem) {
    const detail = typeof problem === "object" && problem ? problem.detail || problem.title : problem;
    super(`${status}${detail ? `: ${detail}` : ""}`);
    this.status = status;
    this.problem = problem;
  }
}

function url(path, params = {}) {
  const target = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(name, value);
  }
  return target;
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${session.token()}`, ...extra };
}

async function failure(response) {
  const type = response.headers.get("content-type") || "";
  return new ApiError(response.status, type.includes("json") ? await response.json() : await response.text());
}

/** Call a JSON route; the answer's body, or an ApiError. */
export async function api(path, { method = "GET", params, body, signal } = {}) {
  const init = { method, headers: headers({ Accept: "application/json" }), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, params), init);
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

/** Call a JSON route that needs no token (the admin's login); the answer's body, or an ApiError. */
export async function anonymous(path, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path), init);
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Server-Sent Events from a route, read through fetch (EventSource cannot send the
 * Authorization header). Yields {id, data} until `signal` aborts.
 */
export async function* events(path, { params, signal } = {}) {
  const response = await fetch(url(path, params), {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r\n\r\n|\n\n|\r\r/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^(\r\n\r\n|\n\n|\r\r)/, "");
      const message = { id: null, data: [] };
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (line.startsWith(":")) continue; // a comment: the server's keep-alive ping
        const [field, ...rest] = line.split(":");
        const text = rest.join(":").replace(/^ /, "");
        if (field === "id") message.id = text;
        if (field === "data") message.data.push(text);
      }
      if (message.data.length) yield { id: message.id, data: message.data.join("\n") };
    }
  }
}

/** The JSON lines of a streamed NDJSON answer, one at a time, as they arrive. */
export async function* lines(path, { params, signal } = {}) {
  const response = await fetch(url(path, params), {
    headers: headers({ Accept: "application/x-ndjson" }),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) yield JSON.parse(line);
    }
    if (done) {
      if (buffer.trim()) yield JSON.parse(buffer);
      return;
    }
  }
}

/** Download a route's answer as a file, with the token (a plain link could not send it). */
export async function download(path, { params, filename }) {
  const response = await fetch(url(path, params), { headers: headers() });
  if (!response.ok) throw await failure(response);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  return blob.size;
}
