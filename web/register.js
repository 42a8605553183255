// A new Matrix account for someone who has none, on the homeserver the operator set up
// (`registration:`), offered by links and bindings made with `--register`. Used by
// join.js and invite.js:
//
//   setUpRegistration({ kind: "binding" | "link", value: () => id, nextSteps: [...],
//                       onChosen: () => …,            // "Create one" pressed, session open
//                       onAccount: (userId, steps, token) => … });  // the account exists
//   await offerRegistration();   // shows "No Matrix account? Create one on …" if offered
//   showAccountForm();           // once the person qualified
//
// The person qualifies first (every provider step of a binding, walked in a browser session
// with no Matrix ID; or the link itself). Only then does the bot mint a single-use token,
// with which this page registers the account from the browser (`/register`: the token
// stage, the server's terms shown to the person, the dummy stage). A stage this page cannot
// do (a captcha, an email) is said plainly, with the token to paste into the homeserver's
// own sign-up. The new account proves itself with an OpenID token as any sign-in does, and
// its temporary device is signed out. The end says how to open the account in an app.

import * as hs from "./homeserver.js";
import * as plugin from "./plugin-api.js";
import { showProblem, showUnexpected } from "./problems.js";
import {
  $, announce, copyButton, el, formatDate, setBusy, setFieldError, showState, showSteps,
} from "./ui.js";

const WALK_KEY = "thirdparty_invite.register";  // sessionStorage: a walk with no Matrix ID
const WALK_MAX_AGE_MS = 30 * 60 * 1000;
const DEVICE_NAME = "Account set-up page (signs itself out)";
const TOKEN_STAGE = "m.login.registration_token";
const DOABLE = new Set([TOKEN_STAGE, "m.login.terms", "m.login.dummy"]);
const USERNAME = /^[a-z0-9._=\/+-]{1,64}$/;
const CREATE_STEPS = ["Getting your one-time code", "Creating your account",
  "Getting a one-time proof of your new Matrix ID", "Signing out the set-up session",
  "Checking the proof"];

const self = {
  options: null, offer: null, baseUrl: "", issued: null, flow: null, userId: "",
};

const post = (path, body) => plugin.api(path, { method: "POST", body });

// The plugin's routes for someone with no Matrix ID yet (see api/openapi.json).
export const walk = {
  progress: (binding) => post("api/register/progress", { binding }),
  start: (binding, provider) => post("api/register/start", { binding, provider }),
};

export function setUpRegistration(options) {
  self.options = options;
}

// The forms exist only on a page that offers an account (the sign-in's own password field
// stays the page's only one otherwise).
function buildForms() {
  if ($("state-register")) return;
  $("registration").replaceChildren(...forms());
  $("register-start").addEventListener("click", chooseToRegister);
  $("state-register").addEventListener("submit", onCreate);
  $("register-cancel").addEventListener("click", () => {
    forgetWalk();
    location.reload();
  });
  copyButton("register-copy", "register-code", "Copied. Paste it into the sign-up form.");
}

// Whether this link or binding offers an account; shows the offer under the Matrix ID form.
export async function offerRegistration() {
  const { kind, value } = self.options;
  try {
    self.offer = await post("api/register/offer", { [kind]: value() });
  } catch {
    self.offer = null;  // the sign-in works without it
  }
  if (!self.offer?.offered) return false;
  buildForms();
  $("register-start").textContent = `No Matrix account? Create one on ${self.offer.server_name}`;
  $("state-mxid").append($("register-offer"));
  $("register-offer").hidden = false;
  return true;
}

// True while this tab is walking the binding's providers to make an account.
export function registering(value) {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(WALK_KEY) || "null");
  } catch {}  // unreadable: no walk
  return Boolean(saved) && saved.value === value && Date.now() - saved.at < WALK_MAX_AGE_MS;
}

export function forgetWalk() {
  sessionStorage.removeItem(WALK_KEY);
}

// The new account, signed in, admitted with its token (and the link, for a link's token).
export const claimAccount = (token, link) =>
  post("api/register/claim", link ? { token, link } : { token });

export const serverName = () => self.offer?.server_name || "";

async function chooseToRegister() {
  const done = setBusy($("register-start"), "One moment…");
  try {
    await post("api/register/session", {});
  } catch (error) {
    done();
    return showUnexpected(error, () => chooseToRegister());
  }
  done();
  sessionStorage.setItem(WALK_KEY,
    JSON.stringify({ value: self.options.value(), at: Date.now() }));
  announce(`Creating a Matrix account on ${serverName()}.`);
  await self.options.onChosen();
}

// ---- the account form -------------------------------------------------------------------

// Once the person qualified: find the homeserver, learn what its sign-up asks for, and
// show the form (or, when it asks for something this page cannot do, the way round).
export async function showAccountForm() {
  const steps = showSteps([`Looking for ${serverName()}`]);
  try {
    await steps.run(async () => {
      self.baseUrl ||= self.offer.client_url ||
        await hs.discoverHomeserver(self.offer.server_name);
      self.flow = await signUpFlow();
    });
  } catch (error) {
    return showUnexpected(error, () => showAccountForm());
  }
  if (!self.flow) return showManualSignUp();
  $("register-server").textContent = serverName();
  $("register-suffix").textContent = `:${serverName()}`;
  showTerms(self.flow.policies);
  showState("state-register", "register-username");
}

// The first flow of the homeserver's sign-up that has the token stage and only stages this
// page can do, with the terms it shows; null when there is none.
async function signUpFlow() {
  const { status, data } = await register({});
  if (status !== 401 || !Array.isArray(data?.flows)) {
    throw new Error(data?.error || `${serverName()} does not offer sign-up (${status}).`);
  }
  const flow = data.flows.map((f) => f.stages || [])
    .find((stages) => stages.includes(TOKEN_STAGE) && stages.every((s) => DOABLE.has(s)));
  if (!flow) return null;
  return { stages: flow, policies: policiesOf(data.params?.["m.login.terms"]) };
}

function policiesOf(terms) {
  const policies = Object.values(terms?.policies || {});
  return policies.map((policy) => {
    const language = policy.en || Object.values(policy).find((v) => v?.url) || {};
    return { name: String(language.name || "Terms"), url: String(language.url || "") };
  }).filter((policy) => /^https?:\/\//.test(policy.url));
}

function showTerms(policies) {
  $("register-terms").hidden = !policies.length;
  $("register-accept").required = Boolean(policies.length);
  $("register-policies").replaceChildren(...policies.map((policy) => el("li", {},
    el("a", { href: policy.url, target: "_blank", rel: "noopener" }, policy.name))));
}

async function onCreate(event) {
  event.preventDefault();
  const username = $("register-username").value.trim().toLowerCase().replace(/^@/, "");
  const password = $("register-password").value;
  for (const [id, error] of [["register-username", "register-username-error"],
    ["register-password", "register-password-error"]]) setFieldError(id, error, "");
  if (!USERNAME.test(username)) {
    return fieldProblem("register-username", "register-username-error",
      "Use lowercase letters, digits and . _ = - / + only.");
  }
  if (password.length < 8) {
    return fieldProblem("register-password", "register-password-error",
      "Use at least 8 characters.");
  }
  if (password !== $("register-confirm").value) {
    return fieldProblem("register-password", "register-password-error",
      "The two passwords are not the same.");
  }
  if (!$("register-terms").hidden && !$("register-accept").checked) {
    $("register-accept").focus();
    return announce("Accept the terms to continue.");
  }
  const steps = showSteps([...CREATE_STEPS, ...self.options.nextSteps]);
  try {
    self.issued ||= await steps.run(() => post("api/register/token",
      { [self.options.kind]: self.options.value() }));
  } catch (error) {
    return onTokenProblem(error);
  }
  let account;
  try {
    account = await steps.run(() => completeSignUp(username, password));
  } catch (error) {
    return onSignUpProblem(error);
  }
  $("register-password").value = $("register-confirm").value = "";
  self.userId = account.user_id;
  let openid;
  try {
    openid = await steps.run(() => hs.requestOpenIdToken(self.baseUrl, account));
  } catch (error) {
    await hs.logout(self.baseUrl, account).catch(() => {});
    return accountMadeButNotProven(error);
  }
  await steps.run(() => hs.logout(self.baseUrl, account)).catch(() => {});
  try {
    await steps.run(() => plugin.openSession(openid));
  } catch (error) {
    return accountMadeButNotProven(error);
  }
  forgetWalk();
  await self.options.onAccount(account.user_id, steps, self.issued.token);
}

function accountMadeButNotProven(error) {
  forgetWalk();
  showProblem(`Your account ${self.userId} is made, but the bot could not check it`,
    error.message, { advice: "Open your invite link again and sign in with your new " +
      "account and password.", back: null });
}

function fieldProblem(id, errorId, message) {
  setFieldError(id, errorId, message);
  $(id).focus();
}

// Every stage of the chosen flow, in order, in one sign-up session.
async function completeSignUp(username, password) {
  const body = { username, password, initial_device_display_name: DEVICE_NAME };
  let { status, data } = await register(body);
  for (const stage of self.flow.stages) {
    if (status !== 401 || data?.errcode) break;
    if ((data.completed || []).includes(stage)) continue;
    const auth = { type: stage, session: data.session };
    if (stage === TOKEN_STAGE) auth.token = self.issued.token;
    ({ status, data } = await register({ ...body, auth }));
  }
  if (status === 200 && data?.access_token) return data;
  const error = new Error(data?.error || `${serverName()} answered with status ${status}.`);
  error.errcode = data?.errcode;
  throw error;
}

async function register(body) {
  let response;
  try {
    response = await fetch(new URL("_matrix/client/v3/register", self.baseUrl), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: AbortSignal.timeout(hs.FETCH_TIMEOUT_MS),
    });
  } catch {
    throw new Error(`${serverName()} did not answer.`);
  }
  return { status: response.status, data: await response.json().catch(() => null) };
}

function onTokenProblem(error) {
  const retry = () => showState("state-register", "register-username");
  if (error instanceof plugin.PluginError && error.errcode === "TPI_NOT_QUALIFIED") {
    return showProblem("You have not qualified yet", error.message,
      { retry: () => location.reload(), retryLabel: "Start again", back: null });
  }
  if (error instanceof plugin.PluginError && error.status !== 0 && error.status < 500) {
    return showProblem("No account can be made now", error.message,
      { retry, retryLabel: "Back", back: null });
  }
  return showUnexpected(error, retry);
}

function onSignUpProblem(error) {
  showState("state-register", "register-username");
  const taken = { M_USER_IN_USE: "This username is taken. Choose another.",
    M_INVALID_USERNAME: "This username cannot be used. Choose another.",
    M_EXCLUSIVE: "This username is reserved. Choose another." }[error.errcode];
  if (taken) return fieldProblem("register-username", "register-username-error", taken);
  if (error.errcode === "M_WEAK_PASSWORD") {
    return fieldProblem("register-password", "register-password-error", error.message);
  }
  if (error.errcode === "M_UNAUTHORIZED" || error.errcode === "M_FORBIDDEN") {
    self.issued = null;
    return showProblem("The one-time code was not accepted", `${error.message} It works once ` +
      "and for a limited time.", { advice: "Start again from your invite link.",
      retry: () => location.reload(), retryLabel: "Start again", back: null });
  }
  showUnexpected(error, () => showState("state-register", "register-username"));
}

// The homeserver asks for a stage this page cannot do: its own sign-up, with the code.
async function showManualSignUp() {
  try {
    self.issued ||= await post("api/register/token",
      { [self.options.kind]: self.options.value() });
  } catch (error) {
    return onTokenProblem(error);
  }
  $("register-code").textContent = self.issued.token;
  $("register-code-expiry").textContent = formatDate(self.issued.expires_at);
  const signup = self.offer.signup_url;
  $("register-signup").hidden = !signup;
  if (signup) $("register-signup").href = signup;
  $("register-manual-where").textContent = signup
    ? `Open ${serverName()}'s sign-up, create your account there and paste this code when ` +
      "it asks for a registration token."
    : `In a Matrix app (Element, for example), create an account on ${serverName()} and ` +
      "paste this code when it asks for a registration token.";
  showState("state-register-manual", "register-manual-title");
  forgetWalk();
}

// ---- the end ----------------------------------------------------------------------------

// After the invite: how to open the new account in a Matrix app.
export function showWelcome() {
  const address = self.baseUrl ? new URL(self.baseUrl).host : serverName();
  $("register-welcome-text").replaceChildren(
    "Your new Matrix account is ", el("strong", {}, self.userId || ""), ". To use it, " +
    "install a Matrix app (Element, for example, from element.io), choose “Sign in”, " +
    `change the homeserver to ${serverName()}` +
    (address !== serverName() ? ` (its address: ${address})` : "") +
    ", then sign in with your username and password. Your invite is waiting there.");
  $("register-welcome").hidden = false;
  $("state-done").append($("register-welcome"));
}

// ---- the forms --------------------------------------------------------------------------

function forms() {
  const hidden = true;
  return [
    el("div", { id: "register-offer", class: "register-offer", hidden },
      el("button", { id: "register-start", type: "button", class: "link" })),

    el("form", { id: "state-register", class: "state", hidden, novalidate: true },
      el("h2", { tabindex: "-1" }, "Create your Matrix account on ",
        el("span", { id: "register-server" })),
      el("p", { class: "hint" }, "Your password goes only to that homeserver. You will " +
        "use these to sign in to a Matrix app afterwards."),
      el("label", { for: "register-username" }, "Username"),
      el("p", { id: "register-username-hint", class: "hint" }, "Your Matrix ID will be @",
        el("em", {}, "username"), el("span", { id: "register-suffix" }), "."),
      el("input", { id: "register-username", name: "username", autocomplete: "username",
        spellcheck: "false", autocapitalize: "off",
        "aria-describedby": "register-username-hint register-username-error" }),
      el("p", { id: "register-username-error", class: "field-error", hidden }),
      el("label", { for: "register-password" }, "Password"),
      el("input", { id: "register-password", name: "password", type: "password",
        autocomplete: "new-password", "aria-describedby": "register-password-error" }),
      el("p", { id: "register-password-error", class: "field-error", hidden }),
      el("label", { for: "register-confirm" }, "Password, again"),
      el("input", { id: "register-confirm", name: "confirm", type: "password",
        autocomplete: "new-password" }),
      el("div", { id: "register-terms", hidden },
        el("p", {}, "The homeserver asks you to accept:"),
        el("ul", { id: "register-policies" }),
        el("label", { class: "checkbox" },
          el("input", { id: "register-accept", type: "checkbox" }),
          " I accept these terms")),
      el("div", { class: "actions" },
        el("button", { id: "register-submit", type: "submit" }, "Create account"),
        el("button", { id: "register-cancel", type: "button", class: "secondary" },
          "I have an account"))),

    el("section", { id: "state-register-manual", class: "state", hidden },
      el("h2", { tabindex: "-1", id: "register-manual-title" },
        "Finish on the homeserver's own sign-up"),
      el("p", {}, "The homeserver asks for a step this page cannot do for you (a captcha or " +
        "an email, for example)."),
      el("p", { id: "register-manual-where" }),
      el("div", { class: "copy-row" },
        el("code", { id: "register-code" }),
        el("button", { id: "register-copy", type: "button", class: "secondary small" },
          "Copy")),
      el("p", { class: "hint" }, "The code works once, until ",
        el("span", { id: "register-code-expiry" }), ". Afterwards, open your invite link " +
        "again and sign in with your new account."),
      el("p", {}, el("a", { id: "register-signup", rel: "noopener", hidden },
        "Open the sign-up page"))),

    el("div", { id: "register-welcome", class: "register-welcome", hidden },
      el("h3", {}, "Open your new account"),
      el("p", { id: "register-welcome-text" })),
  ];
}
