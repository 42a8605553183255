// The Matrix sign-in step, for every page: the visitor's Matrix ID, their homeserver
// (discovery, or an address they type), password or single sign-on, a one-time OpenID
// token, logout of that temporary session, then `api/session` opens the bot's web session.
// A browser that holds a session already is asked "Join as @you?" instead.
//
// The page gives a placeholder (<div id="matrix-signin">), its own #state-progress with
// #steps, and the problem states of problems.js; this module brings its forms:
//
//   setUpMatrixSignIn({ submitLabel: "Sign in and join", nextSteps: ["Claiming…"],
//                       fragment: () => token, onSignedIn: (userId, steps) => … });
//   (`sessionAction`, default "Join": the verb of "Join as @you?" and of its button.)
//   offerSession(session) or askForMatrixId(); after SSO: finishSso(sso).
//
// `onSignedIn` gets the progress list with `nextSteps` still to run (null after "Join as").

import * as hs from "./homeserver.js";
import { keepForSsoReturn } from "./link-token.js";
import * as plugin from "./plugin-api.js";
import { showProblem, showUnexpected } from "./problems.js";
import { $, announce, el, holdOnly, setBusy, setFieldError, showState, showSteps } from "./ui.js";

const PROOF_STEPS = [
  "Getting a one-time proof of your Matrix ID", "Signing out the temporary session",
  "Checking the proof",
];

const self = { userId: "", serverName: "", baseUrl: "", options: null };

export function setUpMatrixSignIn(options) {
  self.options = options;
  $("matrix-signin").replaceChildren(...forms(options.submitLabel,
    options.sessionAction || "Join"));
  $("state-mxid").addEventListener("submit", onMatrixIdSubmit);
  $("state-signin").addEventListener("submit", onPasswordSubmit);
  $("signin-back").addEventListener("click", () => askForMatrixId());
  $("session-join").addEventListener("click", () => options.onSignedIn(self.userId, null));
  $("session-switch").addEventListener("click", async () => {
    await plugin.closeSession().catch(() => {});
    askForMatrixId();
  });
}

// ---- a session this browser holds already -------------------------------------------

export function offerSession(session) {
  self.userId = session.user_id;
  $("session-user").textContent = session.user_id;
  showState("state-session", "session-join");
}

// ---- the Matrix ID --------------------------------------------------------------------

export function askForMatrixId({ openHomeserver = false } = {}) {
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
  Object.assign(self, parsed);
  const done = setBusy($("mxid-continue"), `Looking for ${parsed.serverName}…`);
  announce(`Looking for your homeserver, ${parsed.serverName}.`);
  try {
    self.baseUrl = await hs.discoverHomeserver(parsed.serverName, $("homeserver").value.trim());
    const options = await hs.loginOptions(self.baseUrl);
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

// ---- signing in -----------------------------------------------------------------------

function showSignIn(options) {
  $("signin-user").textContent = self.userId;
  $("signin-server").textContent = new URL(self.baseUrl).host;
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
  const steps = showSteps(["Signing in to your homeserver", ...PROOF_STEPS,
    ...self.options.nextSteps]);
  let login;
  try {
    login = await steps.run(() => hs.passwordLogin(self.baseUrl, self.userId, password));
  } catch (error) {
    $("password").value = "";
    return onSignInProblem(error);
  }
  $("password").value = "";
  await proveAndContinue(login, steps);
}

function onSignInProblem(error) {
  if (error.kind === "wrong_password" || error.kind === "rate_limited") {
    showState("state-signin", "password");
    const message = error.kind === "wrong_password"
      ? "Wrong password for this Matrix ID. Check it and try again."
      : `Too many sign-in attempts. Your homeserver asks you to wait ${error.waitSeconds} s.`;
    setFieldError("password", "password-error", message);
    if (error.kind === "rate_limited") {
      holdOnly($("password-submit"), error.waitSeconds, self.options.submitLabel);
    }
    return;
  }
  if (error.kind === "unreachable") return onHomeserverProblem(error);
  showUnexpected(error, () => askForMatrixId());
}

function startSso(idp) {
  const returnUrl = location.origin + location.pathname;  // no fragment: the link stays here
  keepForSsoReturn({ token: self.options.fragment(), baseUrl: self.baseUrl, userId: self.userId });
  announce(`Going to ${idp.name} to sign in.`);
  location.assign(hs.ssoRedirectUrl(self.baseUrl, idp.id, returnUrl));
}

// Back from the homeserver's single sign-on with a login token (link-token.js took it).
export async function finishSso(sso) {
  Object.assign(self, { baseUrl: sso.baseUrl, userId: sso.userId });
  const steps = showSteps(["Finishing single sign-on", ...PROOF_STEPS, ...self.options.nextSteps]);
  let login;
  try {
    login = await steps.run(() => hs.tokenLogin(sso.baseUrl, sso.loginToken));
  } catch (error) {
    return showUnexpected(error, () => askForMatrixId());
  }
  await proveAndContinue(login, steps);
}

// ---- the proof ------------------------------------------------------------------------

async function proveAndContinue(login, steps) {
  self.userId = login.user_id || self.userId;
  let openid;
  try {
    openid = await steps.run(() => hs.requestOpenIdToken(self.baseUrl, login));
  } catch (error) {
    await hs.logout(self.baseUrl, login).catch(() => {});
    return showUnexpected(error, () => askForMatrixId());
  }
  // Signed out before anything else happens: no device is left behind on their account.
  await steps.run(() => hs.logout(self.baseUrl, login)).catch(() => {});
  let session;
  try {
    session = await steps.run(() => plugin.openSession(openid));
  } catch (error) {
    return showUnexpected(error, () => askForMatrixId());
  }
  await self.options.onSignedIn(session.user_id || self.userId, steps);
}

// ---- the forms ------------------------------------------------------------------------

function forms(submitLabel, sessionAction) {
  const hidden = true;
  return [
    el("section", { id: "state-session", class: "state", hidden },
      el("h2", { tabindex: "-1" }, "You are signed in"),
      el("p", {}, `${sessionAction} as `, el("strong", { id: "session-user" }), "?"),
      el("div", { class: "actions" },
        el("button", { id: "session-join", type: "button" }, sessionAction),
        el("button", { id: "session-switch", type: "button", class: "secondary" },
          "Use another account"))),

    el("form", { id: "state-mxid", class: "state", hidden, novalidate: true },
      el("h2", { tabindex: "-1" }, "Who are you on Matrix?"),
      el("label", { for: "mxid" }, "Your Matrix ID"),
      el("p", { id: "mxid-hint", class: "hint" },
        "It looks like @alice:example.org. Your Matrix app shows it in its settings."),
      el("input", { id: "mxid", name: "mxid", autocomplete: "username", inputmode: "email",
        spellcheck: "false", autocapitalize: "off", "aria-describedby": "mxid-hint mxid-error" }),
      el("p", { id: "mxid-error", class: "field-error", hidden }),
      el("details", { id: "homeserver-details" },
        el("summary", {}, "My homeserver has a different address"),
        el("label", { for: "homeserver" }, "Homeserver address"),
        el("p", { id: "homeserver-hint", class: "hint" }, "Only needed when this page cannot " +
          "find your homeserver from your Matrix ID, e.g. https://matrix.example.org."),
        el("input", { id: "homeserver", name: "homeserver", inputmode: "url",
          spellcheck: "false", autocapitalize: "off", "aria-describedby": "homeserver-hint" })),
      el("div", { class: "actions" },
        el("button", { id: "mxid-continue", type: "submit" }, "Continue"))),

    el("form", { id: "state-signin", class: "state", hidden, novalidate: true },
      el("h2", { tabindex: "-1" }, "Sign in to prove it is you"),
      el("p", { class: "hint" }, "Signing in as ", el("strong", { id: "signin-user" }), " at ",
        el("strong", { id: "signin-server" }), ". ", el("span", { id: "signin-privacy" })),
      el("div", { id: "password-block", hidden },
        el("label", { for: "password" }, "Password"),
        el("input", { id: "password", name: "password", type: "password",
          autocomplete: "current-password", "aria-describedby": "password-error" }),
        el("p", { id: "password-error", class: "field-error", hidden }),
        el("div", { class: "actions" },
          el("button", { id: "password-submit", type: "submit" }, submitLabel))),
      el("div", { id: "sso-block", hidden },
        el("p", { id: "sso-intro", class: "hint" }, "Your homeserver signs you in through:"),
        el("div", { id: "sso-buttons", class: "actions" })),
      el("button", { id: "signin-back", type: "button", class: "link" },
        "Use a different Matrix ID")),
  ];
}
