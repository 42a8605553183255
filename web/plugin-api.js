// The invite bot's own web API (described in api/openapi.json), relative to this page.

export class PluginError extends Error {
  constructor(errcode, message, status, waitSeconds = null) {
    super(message);
    this.errcode = errcode;
    this.status = status;
    this.waitSeconds = waitSeconds;
  }
}

// The link itself no longer admits anyone (an invite link, or a binding's link).
const LINK_ERRCODES = new Set([
  "TPI_LINK_UNKNOWN", "TPI_LINK_EXPIRED", "TPI_LINK_REVOKED", "TPI_LINK_USED_UP",
  "TPI_BINDING_UNKNOWN", "TPI_BINDING_REMOVED",
]);

export function isLinkProblem(error) {
  return error instanceof PluginError && LINK_ERRCODES.has(error.errcode);
}

// Seconds to wait after a 429: Retry-After (whole seconds), else the body's retry_after_ms.
function waitOf(response, data) {
  const seconds = Number(response.headers.get("Retry-After"));
  if (Number.isFinite(seconds) && seconds > 0) return Math.ceil(seconds);
  const ms = Number(data.retry_after_ms);
  return Number.isFinite(ms) && ms > 0 ? Math.ceil(ms / 1000) : null;
}

// Every call of the pages (and of the admin panel's manage-api.js) goes through here.
export async function api(path, { method = "GET", body } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: body ? { "Content-Type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(20000),
    });
  } catch {
    throw new PluginError("TPI_NETWORK", "The invite service could not be reached. " +
      "Check your connection and try again.", 0);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new PluginError(data.errcode || "TPI_HTTP",
      data.error || `The invite service answered with status ${response.status}.`,
      response.status, response.status === 429 ? waitOf(response, data) : null);
  }
  return data;
}

export const inspectLink = (token) => api("api/links/inspect", { method: "POST", body: { token } });

export const openSession = (openid) => api("api/session", {
  method: "POST",
  body: { access_token: openid.access_token, matrix_server_name: openid.matrix_server_name },
});

export async function currentSession() {
  try {
    return await api("api/session");
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export const closeSession = () => api("api/session", { method: "DELETE" });

export const claimLink = (token) => api("api/links/claim", { method: "POST", body: { token } });

export const listInvites = () => api("api/invites");

// A binding's link (…/join#<binding>): what it asks for, this browser's walk through its
// providers, leaving for one of them, and the one-time ticket from the bot's direct chat.
export const inspectBinding = (binding) =>
  api("api/bindings/inspect", { method: "POST", body: { binding } });

export const bindingProgress = (binding) =>
  api("api/bindings/progress", { method: "POST", body: { binding } });

export const startProviderSignIn = (binding, provider) =>
  api("api/oauth/start", { method: "POST", body: { binding, provider } });

export const redeemTicket = (ticket) =>
  api("api/session/ticket", { method: "POST", body: { ticket } });
