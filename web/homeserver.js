// Talks to the visitor's own homeserver, from their browser: finds it, reads its login
// flows, signs in (password, or the token an SSO redirect brings back), gets an OpenID
// token and signs that temporary session out again. The access token never leaves here.

export const FETCH_TIMEOUT_MS = 15000;
const CLIENT_API = "_matrix/client/v3/";
export const DEVICE_NAME = "Invite link check (signs itself out)";

// kind: "bad_mxid" | "unreachable" | "not_matrix" | "wrong_password" | "rate_limited"
//     | "no_login" | "homeserver"; rate_limited also carries waitSeconds.
export class HomeserverError extends Error {
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    Object.assign(this, extra);
  }
}

export function parseMatrixId(text) {
  let value = text.trim();
  if (value && !value.startsWith("@")) value = "@" + value;  // "alice:example.org" is meant
  const match = /^@([^:\s]+):((?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/
    .exec(value);
  if (!match) {
    throw new HomeserverError("bad_mxid",
      "That is not a Matrix ID. A Matrix ID looks like @alice:example.org.");
  }
  return { userId: match[0], serverName: match[2] + (match[3] || "") };
}

export function isLoopback(serverName) {
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(serverName);
}

function withSlash(url) {
  return url.replace(/\/+$/, "") + "/";
}

async function fetchJson(url, options = {}) {
  const response = await fetch(url, { ...options, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  const data = await response.json().catch(() => null);
  return { response, data };
}

async function isClientApi(baseUrl) {
  try {
    const { response, data } = await fetchJson(new URL("_matrix/client/versions", baseUrl));
    return response.ok && Array.isArray(data?.versions);
  } catch {
    return false;
  }
}

async function answersAtAll(origin) {
  // An opaque no-cors request succeeds whenever a web server answers, CORS or not: it tells
  // "nothing there" apart from "something there, but not a Matrix homeserver".
  try {
    await fetch(origin, { mode: "no-cors", signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    return true;
  } catch {
    return false;
  }
}

// The base URL of the homeserver's client API, from /.well-known/matrix/client or the
// server name itself; `override` is an address the visitor typed in.
export async function discoverHomeserver(serverName, override) {
  const candidates = [];
  if (override) {
    let url;
    try {
      url = new URL(override.includes("://") ? override : `https://${override}`);
    } catch {
      throw new HomeserverError("bad_mxid", "That homeserver address is not a web address.");
    }
    candidates.push(withSlash(url.href));
  } else {
    // Plain http only for loopback names, where local test and demo servers live.
    const schemes = isLoopback(serverName) ? ["http", "https"] : ["https"];
    for (const scheme of schemes) {
      try {
        const { response, data } = await fetchJson(
          `${scheme}://${serverName}/.well-known/matrix/client`);
        const base = data?.["m.homeserver"]?.base_url;
        if (response.ok && typeof base === "string" && /^https?:\/\//.test(base)) {
          candidates.push(withSlash(base));
          break;
        }
      } catch {
        // No .well-known there: the server name itself is tried below.
      }
    }
    candidates.push(...schemes.map((scheme) => `${scheme}://${serverName}/`));
  }
  for (const candidate of candidates) {
    if (await isClientApi(candidate)) return candidate;
  }
  const shown = override || serverName;
  const origins = candidates.map((candidate) => new URL(candidate).origin);
  for (const origin of new Set(origins)) {
    if (await answersAtAll(origin)) {
      throw new HomeserverError("not_matrix",
        `${shown} answers, but not as a Matrix homeserver this page can use.`);
    }
  }
  throw new HomeserverError("unreachable", `${shown} did not answer.`);
}

async function call(baseUrl, path, { method = "GET", body, accessToken } = {}) {
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  let result;
  try {
    result = await fetchJson(new URL(CLIENT_API + path, baseUrl), {
      method, headers, body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new HomeserverError("unreachable", "Your homeserver stopped answering.");
  }
  const { response, data } = result;
  if (response.status === 429) {
    const ms = data?.retry_after_ms ?? Number(response.headers.get("Retry-After")) * 1000;
    const waitSeconds = Math.max(1, Math.ceil((Number.isFinite(ms) && ms > 0 ? ms : 5000) / 1000));
    throw new HomeserverError("rate_limited",
      "Your homeserver has seen too many attempts and asks to wait.", { waitSeconds });
  }
  if (!response.ok) {
    throw new HomeserverError("homeserver",
      data?.error || `Your homeserver answered with status ${response.status}.`,
      { errcode: data?.errcode, status: response.status });
  }
  return data || {};
}

// What this page can use: password sign-in, SSO (with the identity providers offered).
export async function loginOptions(baseUrl) {
  const { flows = [] } = await call(baseUrl, "login");
  const sso = flows.find((flow) => flow.type === "m.login.sso");
  const options = {
    password: flows.some((flow) => flow.type === "m.login.password"),
    sso: null,
  };
  if (sso && flows.some((flow) => flow.type === "m.login.token")) {
    const providers = Array.isArray(sso.identity_providers) ? sso.identity_providers : [];
    options.sso = providers
      .filter((idp) => typeof idp?.id === "string" && idp.id)
      .map((idp) => ({ id: idp.id, name: typeof idp.name === "string" ? idp.name : idp.id }));
    if (!options.sso.length) options.sso = [{ id: null, name: "single sign-on" }];
  }
  if (!options.password && !options.sso) {
    throw new HomeserverError("no_login",
      "Your homeserver offers neither password sign-in nor single sign-on to web pages.");
  }
  return options;
}

export function ssoRedirectUrl(baseUrl, idpId, returnUrl) {
  const path = idpId ? `login/sso/redirect/${encodeURIComponent(idpId)}` : "login/sso/redirect";
  const url = new URL(CLIENT_API + path, baseUrl);
  url.searchParams.set("redirectUrl", returnUrl);
  return url.href;
}

export async function passwordLogin(baseUrl, userId, password) {
  try {
    return await call(baseUrl, "login", {
      method: "POST",
      body: {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: userId },
        password,
        initial_device_display_name: DEVICE_NAME,
      },
    });
  } catch (error) {
    if (error.errcode === "M_FORBIDDEN") {
      throw new HomeserverError("wrong_password", "Wrong password for this Matrix ID.");
    }
    throw error;
  }
}

export async function tokenLogin(baseUrl, loginToken) {
  return call(baseUrl, "login", {
    method: "POST",
    body: { type: "m.login.token", token: loginToken, initial_device_display_name: DEVICE_NAME },
  });
}

export async function requestOpenIdToken(baseUrl, login) {
  return call(baseUrl, `user/${encodeURIComponent(login.user_id)}/openid/request_token`, {
    method: "POST", body: {}, accessToken: login.access_token,
  });
}

export async function logout(baseUrl, login) {
  await call(baseUrl, "logout", { method: "POST", body: {}, accessToken: login.access_token });
}
