// The invite page: proves the visitor's Matrix ID with an OpenID token obtained from
// their own homeserver, then claims the invite link. The user's password and access
// token stay in this page; the plugin only ever receives the OpenID token.

const $ = (id) => document.getElementById(id);
const token = decodeURIComponent(location.hash.slice(1));
const FETCH_TIMEOUT_MS = 15000;

class StepError extends Error {
  constructor(message, { retry = true } = {}) {
    super(message);
    this.retry = retry;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new StepError(data.error || `The invite service answered ${response.status}.`, {
      retry: response.status >= 500 || response.status === 429,
    });
  }
  return data;
}

async function matrix(baseUrl, path, { method = "GET", body, accessToken } = {}) {
  const headers = body ? { "Content-Type": "application/json" } : {};
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  let response;
  try {
    response = await fetch(new URL(path, baseUrl), {
      method, headers, body: body ? JSON.stringify(body) : undefined,
      signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
    });
  } catch {
    throw new StepError(`Could not reach your homeserver at ${baseUrl}.`);
  }
  const data = await response.json().catch(() => ({}));
  if (response.status === 429) {
    const wait = Math.ceil((data.retry_after_ms || 5000) / 1000);
    throw new StepError(`Your homeserver asks us to slow down. Try again in ${wait} s.`);
  }
  if (!response.ok) {
    const error = new StepError(data.error || `Your homeserver answered ${response.status}.`);
    error.errcode = data.errcode;
    throw error;
  }
  return data;
}

function parseMatrixId(mxid) {
  const match = /^@([^:\s]+):([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/.exec(mxid.trim());
  if (!match) throw new StepError("That is not a Matrix ID. It looks like @alice:example.org.");
  return { userId: match[0], serverName: match[2] + (match[3] || "") };
}

function isLocal(serverName) {
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(serverName);
}

async function discoverHomeserver(serverName, override) {
  if (override) return override.replace(/\/+$/, "") + "/";
  // Plain http is tried only for loopback names, where local test servers live.
  const schemes = isLocal(serverName) ? ["http", "https"] : ["https"];
  for (const scheme of schemes) {
    try {
      const response = await fetch(`${scheme}://${serverName}/.well-known/matrix/client`, {
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (response.ok) {
        const data = await response.json();
        const base = data?.["m.homeserver"]?.base_url;
        if (typeof base === "string" && /^https?:\/\//.test(base)) {
          return base.replace(/\/+$/, "") + "/";
        }
      }
    } catch {
      // No .well-known here: fall through to the server name itself.
    }
  }
  return `${schemes[0]}://${serverName}/`;
}

function setSteps(names) {
  const list = $("steps");
  list.replaceChildren(...names.map((name) => {
    const li = document.createElement("li");
    li.textContent = name;
    return li;
  }));
  return [...list.children];
}

async function step(item, action) {
  item.setAttribute("aria-current", "step");
  try {
    const result = await action();
    item.classList.add("done");
    return result;
  } catch (error) {
    item.classList.add("failed");
    throw error;
  } finally {
    item.removeAttribute("aria-current");
  }
}

async function proveIdentity(items, mxid, password, override) {
  const { userId, serverName } = parseMatrixId(mxid);
  const baseUrl = await step(items[0], () => discoverHomeserver(serverName, override));
  const login = await step(items[1], async () => {
    const flows = await matrix(baseUrl, "_matrix/client/v3/login");
    if (!(flows.flows || []).some((f) => f.type === "m.login.password")) {
      throw new StepError("Your homeserver does not offer password sign-in.", { retry: false });
    }
    try {
      return await matrix(baseUrl, "_matrix/client/v3/login", {
        method: "POST",
        body: {
          type: "m.login.password",
          identifier: { type: "m.id.user", user: userId },
          password,
          initial_device_display_name: "Invite link check (signs itself out)",
        },
      });
    } catch (error) {
      if (error.errcode === "M_FORBIDDEN") throw new StepError("Wrong Matrix ID or password.");
      throw error;
    }
  });
  try {
    return await step(items[2], () => matrix(
      login.well_known?.["m.homeserver"]?.base_url || baseUrl,
      `_matrix/client/v3/user/${encodeURIComponent(login.user_id)}/openid/request_token`,
      { method: "POST", body: {}, accessToken: login.access_token },
    ));
  } finally {
    // Sign the temporary session out whatever happened: no device is left behind.
    await matrix(baseUrl, "_matrix/client/v3/logout", {
      method: "POST", body: {}, accessToken: login.access_token,
    }).catch(() => {});
  }
}

async function waitForInvites(roomIds) {
  for (let i = 0; i < 120; i++) {
    const { invites } = await api("api/invites");
    const mine = invites.filter((invite) => roomIds.includes(invite.room_id));
    if (mine.length && mine.every((invite) => invite.state !== "pending")) return mine;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new StepError("Your invite is queued but taking long. Check your Matrix client soon.");
}

function showResult(title, text, { rooms = [], retry = false, failed = false } = {}) {
  $("result").hidden = false;
  $("result-title").textContent = title;
  $("result-text").textContent = text;
  $("result-text").className = failed ? "error" : "";
  $("result-rooms").replaceChildren(...rooms.map((room) => {
    const li = document.createElement("li");
    if (room.state === "failed") {
      li.textContent = `${room.name}: ${room.error}`;
      li.className = "error";
    } else {
      const a = document.createElement("a");
      a.href = room.matrix_to;
      a.className = "button";
      a.textContent = `Open ${room.name}`;
      li.append(a);
    }
    return li;
  }));
  $("retry").hidden = !retry;
  $("result-title").focus?.();
}

async function onSubmit(event) {
  event.preventDefault();
  const button = $("signin-button");
  button.disabled = true;
  $("result").hidden = true;
  $("progress").hidden = false;
  const items = setSteps([
    "Finding your homeserver", "Signing in", "Getting a one-time proof of your Matrix ID",
    "Checking the proof", "Claiming the invite", "Waiting for the invite",
  ]);
  try {
    const openid = await proveIdentity(items, $("mxid").value, $("password").value,
      $("homeserver").value.trim());
    $("password").value = "";
    await step(items[3], () => api("api/session", {
      method: "POST",
      body: { access_token: openid.access_token, matrix_server_name: openid.matrix_server_name },
    }));
    const claim = await step(items[4], () => api("api/links/claim", {
      method: "POST", body: { token },
    }));
    const rooms = await step(items[5], () => waitForInvites(claim.rooms.map((r) => r.room_id)));
    const failed = rooms.filter((room) => room.state === "failed");
    if (failed.length) {
      showResult("The invite did not go through", "The room admins have been told.", {
        rooms, failed: true, retry: true,
      });
    } else {
      showResult("You are invited", "Accept the invite in your Matrix client, or open the room:", {
        rooms,
      });
      $("signin").hidden = true;
    }
  } catch (error) {
    showResult("Something stopped us", error.message, { retry: error.retry, failed: true });
  } finally {
    button.disabled = false;
  }
}

async function init() {
  $("retry").addEventListener("click", () => { $("result").hidden = true; $("mxid").focus(); });
  if (!token) {
    $("link-summary").textContent = "This page needs an invite link. Ask a room admin for one.";
    return;
  }
  try {
    const link = await api("api/links/inspect", { method: "POST", body: { token } });
    const names = link.rooms.map((room) => room.name).join(", ");
    if (link.status !== "active") {
      const why = { expired: "has expired", revoked: "was revoked", used_up: "is used up" };
      $("link-summary").textContent = `This invite link to ${names} ${why[link.status]}. ` +
        "Ask a room admin for a new one.";
      $("link-summary").className = "error";
      return;
    }
    $("link-summary").textContent = `This link invites you to: ${names}.`;
    $("signin").hidden = false;
    $("signin").addEventListener("submit", onSubmit);
  } catch (error) {
    $("link-summary").textContent = error.message;
    $("link-summary").className = "error";
  }
}

init();
