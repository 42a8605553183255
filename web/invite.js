// The invite page: explains the link, proves the visitor's Matrix ID with an OpenID token
// from their own homeserver (password or SSO), claims the link and shows how the invite
// went. Every failure lands in a state that says what happened and what to do next.

import * as hs from "./homeserver.js";
import { keepForSsoReturn, LINK_PROBLEMS, readLinkToken, takeSsoReturn } from "./link-token.js";
import * as plugin from "./plugin-api.js";
import { limitsText, openLinks, REFUSALS, roomList } from "./rooms.js";
import {
  $, announce, el, hideStates, holdButton, progress as progressIn, setBusy, setFieldError,
  showState,
} from "./ui.js";

const INVITE_WAIT_SECONDS = 60;

const page = {
  token: "", link: null, userId: "", serverName: "", baseUrl: "", retry: null, back: null,
  cancelHold: null,
};

// ---- link summary -------------------------------------------------------------------

function renderLink(link) {
  const names = link.rooms.map((room) => room.name);
  const title = names.length === 1 ? `Join ${names[0]}` : `Join ${names.length} Matrix rooms`;
  $("title").textContent = title;
  document.title = title;
  $("link-rooms").replaceChildren(...roomList(link.rooms));
  $("link-requirement").textContent = "You need a Matrix account, on any homeserver. " +
    "Whoever holds this link may join: nothing else is checked.";
  $("link-limits").textContent = limitsText(link);
  $("link-loading").hidden = true;
  $("link-details").hidden = false;
  const bot = link.bot;
  $("bot-link").textContent = bot.user_id;
  $("bot-link").href = bot.matrix_to;
  $("claim-command").textContent = `!invitebot claim ${page.token}`;
  $("bot-unencrypted").hidden = bot.reads_encrypted_chats !== false;
  $("bot-alternative").hidden = false;
}

function showLinkProblem(message) {
  $("link-loading").hidden = true;
  // What the link would have needed and allowed no longer matters: only the rooms stay.
  $("link-requirement").hidden = true;
  $("link-limits").hidden = true;
  $("link-problem-text").textContent = message;
  $("bot-alternative").hidden = true;
  showState("state-link-problem");
  announce(message);
}

// ---- problems -----------------------------------------------------------------------

function showProblem(title, text, { advice = "", rooms = [], retry = null, retryLabel = "Try again",
  back = askForMatrixId, waitSeconds = null, suggestBot = false, hideBot = false } = {}) {
  page.cancelHold?.();
  page.cancelHold = null;
  $("problem-title").textContent = title;
  $("problem-text").textContent = text;
  $("problem-advice").textContent = advice;
  $("problem-rooms").replaceChildren(...roomList(rooms, (room) => [
    el("span", { class: "error" }, room.error || "The invite did not go through.")]));
  for (const item of $("problem-rooms").children) item.classList.add("failed");
  page.retry = retry;
  page.back = back;
  const retryButton = $("problem-retry");
  retryButton.hidden = !retry;
  retryButton.textContent = retryLabel;
  $("problem-back").hidden = !back;
  if (suggestBot && !$("bot-alternative").hidden) $("bot-alternative").open = true;
  if (hideBot) $("bot-alternative").hidden = true;  // the bot would meet the same refusal
  showState("state-problem");
  announce(`${title}. ${text}`);
  if (retry && waitSeconds) page.cancelHold = holdButton(retryButton, waitSeconds, retryLabel);
}

function showUnexpected(error, retry, options = {}) {
  if (plugin.isLinkProblem(error)) return showLinkProblem(error.message);
  if (error instanceof plugin.PluginError && error.status === 429) {
    return showProblem("Please wait a moment", error.message,
      { retry, waitSeconds: error.waitSeconds || 10, ...options });
  }
  if (error instanceof hs.HomeserverError && error.kind === "rate_limited") {
    return showProblem("Your homeserver asks us to slow down", error.message,
      { retry, waitSeconds: error.waitSeconds, ...options });
  }
  return showProblem("Something stopped us", error.message || String(error),
    { retry, ...options });
}

// ---- step 1: the Matrix ID ----------------------------------------------------------

function askForMatrixId({ openHomeserver = false } = {}) {
  $("homeserver-details").open = openHomeserver || Boolean($("homeserver").value);
  showState("state-mxid", openHomeserver ? "homeserver" : "mxid");
}

async function onMatrixIdSubmit(event) {
  event.preventDefault();
  setFieldError("mxid", "mxid-error", "");
  let parsed;
  try {
    parsed = hs.parseMatrixId($("mxid").value);
  } catch (error) {
    setFieldError("mxid", "mxid-error", error.message);
    $("mxid").focus();
    return;
  }
  Object.assign(page, parsed);
  const done = setBusy($("mxid-continue"), `Looking for ${parsed.serverName}…`);
  announce(`Looking for your homeserver, ${parsed.serverName}.`);
  try {
    page.baseUrl = await hs.discoverHomeserver(parsed.serverName, $("homeserver").value.trim());
    const options = await hs.loginOptions(page.baseUrl);
    done();
    showSignIn(options);
  } catch (error) {
    done();
    onHomeserverProblem(error);
  }
}

function onHomeserverProblem(error) {
  const fix = "Check your Matrix ID for typos. If your homeserver has its own address, " +
    "enter it under “My homeserver has a different address”.";
  const retry = () => askForMatrixId({ openHomeserver: true });
  switch (error.kind) {
    case "bad_mxid":
      setFieldError("mxid", "mxid-error", error.message);
      return askForMatrixId();
    case "unreachable":
      return showProblem("We could not reach your homeserver", error.message,
        { advice: fix, retry, retryLabel: "Check the address", back: null });
    case "not_matrix":
      return showProblem("That is not a Matrix homeserver", error.message,
        { advice: fix, retry, retryLabel: "Check the address", back: null });
    case "no_login":
      return showProblem("Your homeserver does not allow signing in here", error.message,
        { advice: "You can still join: message the bot instead (see below).", suggestBot: true });
    default:
      return showUnexpected(error, () => askForMatrixId());
  }
}

// ---- step 2: sign in ----------------------------------------------------------------

function showSignIn(options) {
  $("signin-user").textContent = page.userId;
  $("signin-server").textContent = new URL(page.baseUrl).host;
  $("signin-privacy").textContent = (options.password
    ? "Your password goes only to your own homeserver. "
    : "You sign in on your homeserver's own pages. ") +
    "This page gets a one-time proof of your Matrix ID, then signs out again.";
  $("password-block").hidden = !options.password;
  $("password").value = "";
  setFieldError("password", "password-error", "");
  $("sso-block").hidden = !options.sso;
  $("sso-intro").textContent = options.password ? "Or sign in through:" :
    "Your homeserver signs you in through:";
  $("sso-buttons").replaceChildren(...(options.sso || []).map((idp) => el("button", {
    type: "button", class: options.password ? "secondary" : "", onclick: () => startSso(idp),
  }, `Continue with ${idp.name}`)));
  showState("state-signin", options.password ? "password" : null);
}

async function onPasswordSubmit(event) {
  event.preventDefault();
  if ($("password-submit").disabled) return;
  const password = $("password").value;
  if (!password) {
    setFieldError("password", "password-error", "Enter your password.");
    $("password").focus();
    return;
  }
  setFieldError("password", "password-error", "");
  const steps = progress(["Signing in to your homeserver", ...PROOF_STEPS, ...CLAIM_STEPS]);
  let login;
  try {
    login = await steps.run(() => hs.passwordLogin(page.baseUrl, page.userId, password));
  } catch (error) {
    $("password").value = "";
    return onSignInProblem(error);
  }
  $("password").value = "";
  await proveAndClaim(login, steps);
}

function onSignInProblem(error) {
  if (error.kind === "wrong_password" || error.kind === "rate_limited") {
    showState("state-signin", "password");
    const message = error.kind === "wrong_password"
      ? "Wrong password for this Matrix ID. Check it and try again."
      : `Too many sign-in attempts. Your homeserver asks you to wait ${error.waitSeconds} s.`;
    setFieldError("password", "password-error", message);
    if (error.kind === "rate_limited") {
      page.cancelHold?.();
      page.cancelHold = holdButton($("password-submit"), error.waitSeconds, "Sign in and join");
    }
    return;
  }
  if (error.kind === "unreachable") return onHomeserverProblem(error);
  showUnexpected(error, () => askForMatrixId());
}

function startSso(idp) {
  const returnUrl = location.origin + location.pathname;  // no fragment: the link stays here
  keepForSsoReturn({ token: page.token, baseUrl: page.baseUrl, userId: page.userId });
  announce(`Going to ${idp.name} to sign in.`);
  location.assign(hs.ssoRedirectUrl(page.baseUrl, idp.id, returnUrl));
}

async function continueSso(sso) {
  Object.assign(page, { baseUrl: sso.baseUrl, userId: sso.userId });
  const steps = progress(["Finishing single sign-on", ...PROOF_STEPS, ...CLAIM_STEPS]);
  let login;
  try {
    login = await steps.run(() => hs.tokenLogin(sso.baseUrl, sso.loginToken));
  } catch (error) {
    return showUnexpected(error, () => askForMatrixId());
  }
  await proveAndClaim(login, steps);
}

// ---- steps 3-4: proof, claim, result ------------------------------------------------

const PROOF_STEPS = [
  "Getting a one-time proof of your Matrix ID", "Signing out the temporary session",
  "Checking the proof",
];
const CLAIM_STEPS = ["Claiming your invite", "Waiting for the invite"];

const progress = (names) => progressIn("steps", "state-progress", names);

async function proveAndClaim(login, steps) {
  page.userId = login.user_id || page.userId;
  let openid;
  try {
    openid = await steps.run(() => hs.requestOpenIdToken(page.baseUrl, login));
  } catch (error) {
    await hs.logout(page.baseUrl, login).catch(() => {});
    return showUnexpected(error, () => askForMatrixId());
  }
  // Signed out before anything else happens: no device is left behind on their account.
  await steps.run(() => hs.logout(page.baseUrl, login)).catch(() => {});
  try {
    await steps.run(() => plugin.openSession(openid));
  } catch (error) {
    return showUnexpected(error, () => askForMatrixId());
  }
  await claimAndWait(steps);
}

async function claimAndWait(steps = progress(CLAIM_STEPS)) {
  try {
    const claim = await steps.run(() => plugin.claimLink(page.token));
    const roomIds = claim.rooms.map((room) => room.room_id);
    const invites = await steps.run(() => waitForInvites(roomIds));
    showOutcome(invites);
  } catch (error) {
    if (error instanceof plugin.PluginError && error.errcode === "M_MISSING_TOKEN") {
      return askForMatrixId();  // the web session ended: prove the Matrix ID again
    }
    showUnexpected(error, () => claimAndWait());
  }
}

async function waitForInvites(roomIds) {
  const deadline = Date.now() + INVITE_WAIT_SECONDS * 1000;
  // Invites usually go out within a second: look often at first, then less and less.
  for (let delay = 250; ; delay = Math.min(delay * 1.5, 2000)) {
    const { invites } = await plugin.listInvites();
    const mine = invites.filter((invite) => roomIds.includes(invite.room_id));
    const settled = mine.length && mine.every((invite) => invite.state !== "pending");
    if (settled || Date.now() > deadline) return mine;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function showOutcome(invites) {
  const failed = invites.filter((invite) => invite.state === "failed")
    .map((invite) => ({ ...invite, error: REFUSALS[invite.errcode] || invite.error }));
  if (failed.length) {
    return showProblem("The invite did not go through",
      failed.length === 1 ? "The bot could not invite you:" : "The bot could not invite you to:",
      { rooms: failed, advice: "The room's admins have been told. Once they have fixed it, " +
          "try again: it does not use up the link.", retry: () => claimAndWait(), back: null,
        hideBot: true });
  }
  const pending = invites.some((invite) => invite.state !== "done");
  const joined = invites.every((invite) => invite.outcome === "already_joined");
  $("done-title").textContent = pending ? "Your invite is on its way" :
    joined ? "You are already in" : "You are invited";
  $("done-text").textContent = pending
    ? "The bot has queued your invite; it will appear in your Matrix app within minutes."
    : `Accept the invite from ${page.link.bot.user_id} in your Matrix app, ` +
      "or open the room from here:";
  $("done-rooms").replaceChildren(...roomList(invites, openLinks));
  $("done-check").hidden = !pending;
  $("bot-alternative").hidden = true;
  $("link-details").hidden = true;  // the result lists the rooms again, with ways to open them
  showState("state-done");
  announce(`${$("done-title").textContent}. ${$("done-text").textContent}`);
}

// ---- start --------------------------------------------------------------------------

async function start() {
  // Another link pasted into this tab changes only the fragment: start over for it.
  window.addEventListener("hashchange", () => location.reload());
  $("state-mxid").addEventListener("submit", onMatrixIdSubmit);
  $("state-signin").addEventListener("submit", onPasswordSubmit);
  $("signin-back").addEventListener("click", () => askForMatrixId());
  $("problem-retry").addEventListener("click", () => page.retry?.());
  $("problem-back").addEventListener("click", () => page.back?.());
  $("done-check").addEventListener("click", () => claimAndWait());
  $("session-join").addEventListener("click", () => claimAndWait());
  $("session-switch").addEventListener("click", async () => {
    await plugin.closeSession().catch(() => {});
    askForMatrixId();
  });
  $("copy-claim").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("claim-command").textContent);
      announce("Copied. Paste it into a direct chat with the bot.");
      $("copy-claim").textContent = "Copied";
    } catch {
      announce("Copying is not allowed here: select the message and copy it yourself.");
    }
  });

  const sso = takeSsoReturn();
  if (sso?.lost) {
    return showLinkProblem("The sign-in came back, but this page lost track of it. " +
      "Open your invite link again.");
  }
  const fragment = sso ? { token: sso.token } : readLinkToken(location.hash);
  if (!fragment.token) return showLinkProblem(LINK_PROBLEMS[fragment.problem]);
  page.token = fragment.token;
  await loadLink(sso);
}

async function loadLink(sso) {
  hideStates();
  $("link-loading").hidden = false;
  try {
    page.link = await plugin.inspectLink(page.token);
  } catch (error) {
    return onLinkUnreadable(error, () => loadLink(sso));
  }
  if (page.link.status !== "active") {
    const why = {
      expired: "This invite link has expired.",
      revoked: "This invite link was withdrawn by a room admin.",
      used_up: "This invite link has been used as many times as it allows.",
    };
    renderLink(page.link);
    return showLinkProblem(why[page.link.status] || "This invite link no longer works.");
  }
  renderLink(page.link);
  if (sso) return continueSso(sso);
  const session = await plugin.currentSession().catch(() => null);
  if (session) {
    page.userId = session.user_id;
    $("session-user").textContent = session.user_id;
    return showState("state-session", "session-join");
  }
  askForMatrixId();
}

// The link could not be looked at: a refusal of the link itself is final; too many
// attempts, an outage or a lost connection can be retried (after the wait, if any).
function onLinkUnreadable(error, retry) {
  const temporary = !(error instanceof plugin.PluginError) || error.status === 429 ||
    error.status >= 500 || error.status === 0;
  if (!temporary) return showLinkProblem(error.message);
  $("link-loading").hidden = true;
  return showUnexpected(error, retry, { back: null });
}

// Whatever went wrong that nothing above expected, the visitor never watches a spinner
// forever: they get a problem state and a way to start again.
function showStartupProblem() {
  $("link-loading").hidden = true;
  showProblem("This page could not start",
    "Something unexpected stopped the invite page. Reload it to try again.",
    { retry: () => location.reload(), retryLabel: "Reload the page", back: null });
}

start().catch(showStartupProblem);
