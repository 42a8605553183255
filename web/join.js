// A binding's page (…/join#<binding>): rooms open to people who prove something at one or
// more providers ("members of team maintainers of matrix-org on GitHub, and Patreon
// patrons of tier Gold"). The visitor proves their Matrix ID (matrix-signin.js; or the
// link from the bot's direct chat, #<binding>.<ticket>, stands in for it), then signs in
// at each provider in turn; the plugin's OAuth callback brings them back here
// (#<binding>, or #problem=<code> when nothing about the return can be trusted). Once
// every provider has said yes the grant is made and the page waits for the invites, as
// the invite page does. A no says which requirement failed and what to do about it.
// Back from a provider, its check runs on the server while this page says so ("Checking
// your GitHub account…") and asks until the outcome is there.

import { showOutcome, waitForInvites } from "./invites.js";
import {
  keepForProviderReturn, LINK_PROBLEMS, providerReturn, readJoinFragment, takeSsoReturn,
} from "./link-token.js";
import {
  askForMatrixId, finishSso, offerSession, setUpMatrixSignIn,
} from "./matrix-signin.js";
import * as plugin from "./plugin-api.js";
import {
  onLinkUnreadable, setUpProblems, showLinkProblem, showProblem, showStartupProblem,
  showUnexpected,
} from "./problems.js";
import * as registration from "./register.js";
import { roomList } from "./rooms.js";
import {
  $, announce, copyButton, el, hideStates, sentence, setBusy, showState, showSteps,
  textWithLinks,
} from "./ui.js";

const CHECK_STEPS = ["Checking what you have proved", "Waiting for the invite"];
const checkingLabel = (name) => `Checking your ${name} account…`;
// The server ends every check within about a minute and a half; past this the page stops
// asking by itself and offers to ask again.
const CHECK_PATIENCE_MS = 120_000;

// `registering`: walking the providers with no Matrix ID, to create an account after.
const page = { binding: "", info: null, registering: false };
const REGISTER_STEPS = ["Admitting your new account", "Waiting for the invite"];

// The providers' step for a signed-in Matrix ID, or for someone making an account.
const walkApi = () => page.registering ? registration.walk
  : { progress: plugin.bindingProgress, start: plugin.startProviderSignIn };

// What the OAuth callback's #problem=<code> means, for the person.
const CALLBACK_PROBLEMS = {
  session_missing: ["Your sign-in could not be finished",
    "This browser came back from the sign-in without the session this page had started: " +
    "it may have ended, or the sign-in finished in another browser or a private window."],
  state_invalid: ["This sign-in cannot be used",
    "The answer from the sign-in page does not match a sign-in started in this browser: " +
    "it was used already, took more than 10 minutes, or was started somewhere else."],
};

// ---- the binding's summary ----------------------------------------------------------

function renderBinding(info) {
  const names = info.rooms.map((room) => room.name);
  const title = names.length === 1 ? `Join ${names[0]}` : `Join ${names.length} Matrix rooms`;
  $("title").textContent = title;
  document.title = title;
  $("link-rooms").replaceChildren(...roomList(info.rooms));
  $("link-requirement").textContent = `Open to ${info.description}.`;
  $("link-plan").textContent = "To join, sign in to your Matrix account, then at " +
    `${inWords(info.providers.map((p) => p.name))}, so the bot can check. It asks them only ` +
    "what this check needs, and invites you when it holds.";
  $("link-loading").hidden = true;
  $("link-details").hidden = false;
  const bot = info.bot;
  $("bot-link").textContent = bot.user_id;
  $("bot-link").href = bot.matrix_to;
  $("claim-command").textContent =
    `!invitebot claim ${location.origin}${location.pathname}#${page.binding}`;
  $("bot-unencrypted").hidden = bot.reads_encrypted_chats !== false;
  $("bot-alternative").hidden = false;
}

function inWords(items) {
  if (items.length <= 2) return items.join(" and ");
  return `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

const providerName = (id) => page.info.providers.find((p) => p.id === id)?.name || id;
const rulesOf = (id) => page.info.rules.filter((rule) => rule.provider === id)
  .map((rule) => rule.description);

// ---- where the visitor stands with the providers ------------------------------------

// After the Matrix sign-in (with its progress list), a "Join", a ticket or a provider's
// callback: ask the plugin what is proved. Granted, with every provider passed in this
// walk: wait for the invites. Otherwise the providers' step, also for someone admitted
// before: signing in again checks them afresh and queues their invites again (they may
// have left the room or declined), as claiming a link again does.
// `back`: the provider this tab just came back from.
async function showWhereYouStand({ steps = null, back = null } = {}) {
  // Signed in: the message to the bot is not needed, and the steps below show the plan.
  $("bot-alternative").hidden = true;
  $("link-plan").hidden = true;
  steps ??= showSteps([back ? checkingLabel(providerName(back)) : CHECK_STEPS[0],
    CHECK_STEPS[1]]);
  let progress;
  try {
    progress = await steps.run(() => checkedProgress(steps));
  } catch (error) {
    return onApiProblem(error, () => showWhereYouStand({ back }));
  }
  const running = progress.providers.find((p) => p.state === "checking");
  if (running) {
    return showProblem(`${running.provider_name} is taking long to answer`,
      `The bot is still waiting for ${running.provider_name} to answer about your account.`,
      { advice: "Nothing is lost: check again in a moment.",
        retry: () => showWhereYouStand({ back }), retryLabel: "Check again", back: null });
  }
  const proved = progress.providers.every((p) => p.state === "passed");
  if (page.registering && progress.qualified) return registration.showAccountForm();
  if (progress.granted && proved) return waitForTheInvites(steps);
  showProviders(progress, back);
}

// What the plugin knows, once no provider's check is running any more (or after
// CHECK_PATIENCE_MS): while one runs, the current step names it and the page asks again,
// often at first (a check usually takes a fraction of a second), then less often.
async function checkedProgress(steps) {
  const deadline = Date.now() + CHECK_PATIENCE_MS;
  for (let delay = 100; ; delay = Math.min(delay * 1.5, 2000)) {
    const progress = await walkApi().progress(page.binding);
    const running = progress.providers.find((p) => p.state === "checking");
    if (!running || Date.now() > deadline) return progress;
    steps.relabel(checkingLabel(running.provider_name));
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

// Which kind of step a provider's is: "todo", "passed", or why it did not pass (the
// plugin's `problem`; rows from before it had one are read from their state).
function kindOf({ state, problem }) {
  if (state === "todo" || state === "passed" || state === "checking") return state;
  return problem || (state === "failed" ? "not_qualified" : "unknown");
}

const STATUS = {
  todo: "To do", checking: "Checking…", passed: "Done", not_qualified: "Not admitted",
  account_in_use: "Already used", unknown: "Not finished", cancelled: "Cancelled",
};

function providerItem(provider, isNext) {
  const { provider_id: id, provider_name: name, state } = provider;
  const kind = kindOf(provider);
  const lines = [];
  if (kind === "passed") {
    lines.push(el("p", { class: "provider-status" },
      provider.account ? `Signed in as ${provider.account}: you qualify.` : "You qualify."));
  } else if (kind !== "todo" && kind !== "checking") {
    // A cancel needs no reason: the heading says it.
    if (kind !== "cancelled") {
      lines.push(el("p", { class: "provider-status" }, sentence(provider.reason)));
    }
    if (remedyOf(provider)) {
      lines.push(el("p", { class: "provider-remedy" }, ...textWithLinks(remedyOf(provider))));
    }
  }
  const badge = kind === "todo" && isNext ? "Next" : STATUS[kind] || state;
  return el("li", { class: `provider-step${isNext ? " next" : ""}`, "data-state": state,
    "data-problem": provider.problem || null },
    el("div", { class: "provider-head" },
      el("strong", { class: "provider-name" }, name),
      el("span", { class: "badge" }, badge)),
    el("p", { class: "provider-rule" }, `Admits ${inWords(rulesOf(id))}.`),
    ...lines);
}

// What to do about a refusal, unless the reason says it already ("… try again in a few
// minutes." and "Try again in a few minutes.").
function remedyOf({ reason, remedy }) {
  const plain = (text) => sentence(text).toLowerCase().replace(/[.!?…]$/, "");
  return remedy && !plain(reason).includes(plain(remedy)) ? sentence(remedy) : "";
}

function showProviders(progress, back) {
  const providers = progress.providers;
  const next = providers.find((p) => p.state !== "passed");
  if (!next) {  // every provider said yes, yet no grant (yet): never a dead end
    return showProblem("Almost there", "Every sign-in passed, but the bot has not admitted " +
      "you yet.", { retry: () => showWhereYouStand(), retryLabel: "Check again" });
  }
  const passed = providers.filter((p) => p.state === "passed").length;
  const name = next.provider_name;
  const kind = kindOf(next);
  // Each kind of no reads apart: the provider said no, the account was used already, the
  // provider could not tell, or the person cancelled.
  const [title, intro, action] = {
    todo: [passed ? `Next: ${name}` : `Sign in at ${name}`,
      `${name} tells the bot whether you qualify. You come back here afterwards.`,
      `Continue with ${name}`],
    not_qualified: [`${name} says you do not qualify`, remedyOf(next)
      ? "Once you have done what it says below, sign in again to check."
      : `Signed in with another ${name} account than you meant? Sign out at ${name}, then ` +
        "sign in here again. If you think you qualify, ask the room's admins.",
      `Sign in at ${name} again`],
    account_in_use: [`This ${name} account was already used`,
      `It let another Matrix account in here before. Meant another ${name} account? Sign ` +
        `out at ${name}, then sign in here again.`,
      `Sign in at ${name} again`],
    unknown: [`${name} could not tell us`,
      "Nothing was held against you: what happened is below, and you can try again.",
      `Try ${name} again`],
    cancelled: [`You cancelled the sign-in at ${name}`,
      "Nothing was checked and nothing was held against you.",
      `Continue with ${name}`],
  }[kind] || [`The check at ${name} did not finish`, "You can try again.", `Try ${name} again`];
  $("providers-title").textContent = title;
  $("providers-intro").textContent = intro;
  $("provider-steps").replaceChildren(...providers.map((p) => providerItem(p, p === next)));
  $("providers-user").textContent = progress.user_id ??
    `nobody yet: once you qualify, you create an account on ${registration.serverName()}`;
  const button = $("provider-action");
  button.textContent = action;
  button.onclick = () => goToProvider(next);
  // Coming back with a refusal: the heading first, so it is read before the button.
  const refused = next.state !== "todo";
  showState("state-providers", refused ? null : "provider-action");
  const came = back && providers.find((p) => p.provider_id === back);
  const heard = came && came !== next && came.state === "passed"
    ? `${came.provider_name}: done. ` : "";
  const why = kind === "cancelled" ? intro : sentence(next.reason);
  announce(refused ? `${title}. ${why} ${remedyOf(next)}`.trim() : `${heard}${title}.`);
}

async function goToProvider(provider) {
  const done = setBusy($("provider-action"), `Going to ${provider.provider_name}…`);
  let url;
  try {
    ({ authorize_url: url } = await walkApi().start(page.binding, provider.provider_id));
    if (!/^https?:\/\//.test(url)) throw new Error("The sign-in address is not a web address.");
  } catch (error) {
    done();
    return onApiProblem(error, () => goToProvider(provider));
  }
  keepForProviderReturn(page.binding, provider.provider_id);
  announce(`Going to ${provider.provider_name} to sign in.`);
  location.assign(url);  // the button stays busy: this page is being left
}

// ---- the result ---------------------------------------------------------------------

async function waitForTheInvites(steps = showSteps([CHECK_STEPS[1]])) {
  const roomIds = page.info.rooms.map((room) => room.room_id);
  try {
    const invites = await steps.run(() => waitForInvites(roomIds));
    const last = page.info.providers.at(-1);
    showOutcome(invites, {
      bot: page.info.bot.user_id,
      checkAgain: () => waitForTheInvites(),
      // A new sign-in at the last provider queues the invites again.
      retry: () => goToProvider({ provider_id: last.id, provider_name: last.name }),
      retryAdvice: `Once they have fixed it, try again: you sign in at ${last.name} once more.`,
    });
  } catch (error) {
    onApiProblem(error, () => waitForTheInvites());
  }
}

// ---- the ways in --------------------------------------------------------------------

// The link from the bot's direct chat: the ticket proves the Matrix ID (once).
async function signInWithTicket(ticket) {
  const steps = showSteps(["Signing you in with the link from the bot", ...CHECK_STEPS]);
  let redeemed;
  try {
    redeemed = await steps.run(() => plugin.redeemTicket(ticket));
  } catch (error) {
    if (error instanceof plugin.PluginError && error.errcode === "TPI_TICKET_INVALID") {
      return showProblem("This sign-in link no longer works", error.message,
        { retry: () => askForMatrixId(), retryLabel: "Sign in with your Matrix account",
          back: null });
    }
    return showUnexpected(error, () => signInWithTicket(ticket), { back: null });
  }
  if (redeemed.binding !== page.binding) {
    location.hash = redeemed.binding;  // the ticket's own binding (the page starts over)
    return;
  }
  announce(`Signed in as ${redeemed.user_id}, from your chat with the bot.`);
  await showWhereYouStand({ steps });
}

// The new account exists and is signed in (register.js): the token admits it.
async function admitNewAccount(token, steps) {
  try {
    await steps.run(() => registration.claimAccount(token));
  } catch (error) {
    return onApiProblem(error, () => admitNewAccount(token, showSteps(REGISTER_STEPS)));
  }
  await waitForTheInvites(steps);
  registration.showWelcome();
}

async function useAnotherAccount() {
  await plugin.closeSession().catch(() => {});
  registration.forgetWalk();
  page.registering = false;
  $("bot-alternative").hidden = false;
  askForMatrixId();
}

// What the plugin refused while the visitor was on their way.
function onApiProblem(error, retry) {
  if (error instanceof plugin.PluginError && error.errcode === "M_MISSING_TOKEN") {
    registration.forgetWalk();
    page.registering = false;
    $("bot-alternative").hidden = false;
    return askForMatrixId();  // the web session ended: prove the Matrix ID again
  }
  return showUnexpected(error, retry);
}

function showCallbackProblem(code) {
  $("link-loading").hidden = true;
  if (code === "binding_removed") {
    return showLinkProblem("This invite link was withdrawn by a room admin.");
  }
  const [title, text] = CALLBACK_PROBLEMS[code] ||
    ["Your sign-in could not be finished", "Something went wrong on the way back here."];
  const started = providerReturn();
  showProblem(title, text, started ? {
    advice: "Start again from your invite link: it takes a minute.",
    retry: () => { location.hash = started.binding; }, retryLabel: "Start again", back: null,
  } : { advice: "Open your invite link again to start over.", back: null });
}

// ---- start --------------------------------------------------------------------------

function setUpRegistration() {
  registration.setUpRegistration({
    kind: "binding",
    value: () => page.binding,
    nextSteps: REGISTER_STEPS,
    onChosen: () => {
      page.registering = true;
      return showWhereYouStand();
    },
    onAccount: (userId, steps, token) => admitNewAccount(token, steps),
  });
}

async function start() {
  // Another link pasted into this tab changes only the fragment: start over for it.
  window.addEventListener("hashchange", () => location.reload());
  // Back from the provider with the browser's back button: this page as it is now.
  window.addEventListener("pageshow", (event) => { if (event.persisted) location.reload(); });
  setUpProblems({ back: () => askForMatrixId() });
  setUpMatrixSignIn({
    submitLabel: "Sign in and continue",
    nextSteps: CHECK_STEPS,
    fragment: () => page.binding,
    onSignedIn: (userId, steps) => showWhereYouStand({ steps }),
  });
  setUpRegistration();
  copyButton("copy-claim", "claim-command", "Copied. Send it to the bot in a direct chat.");
  $("providers-switch").addEventListener("click", useAnotherAccount);

  const sso = takeSsoReturn();
  if (sso?.lost) {
    return showLinkProblem("The sign-in came back, but this page lost track of it. " +
      "Open your invite link again.");
  }
  const fragment = sso ? { binding: sso.token } : readJoinFragment(location.hash);
  if (fragment.callbackProblem) return showCallbackProblem(fragment.callbackProblem);
  if (!fragment.binding) return showLinkProblem(LINK_PROBLEMS[fragment.problem]);
  page.binding = fragment.binding;
  // The ticket works once and stands in for a sign-in: out of the address bar and the
  // history before anything else happens.
  if (fragment.ticket) history.replaceState(null, "", `${location.pathname}#${page.binding}`);
  await loadBinding({ sso, ticket: fragment.ticket });
}

async function loadBinding({ sso = null, ticket = null } = {}) {
  hideStates();
  $("link-loading").hidden = false;
  try {
    page.info = await plugin.inspectBinding(page.binding);
  } catch (error) {
    return onLinkUnreadable(error, () => loadBinding({ sso, ticket }));
  }
  renderBinding(page.info);
  if (sso) return finishSso(sso);
  if (ticket) return signInWithTicket(ticket);
  await registration.offerRegistration();
  if (registration.registering(page.binding)) {  // making an account: back from a provider
    page.registering = true;
    const returned = providerReturn({ take: true });
    return showWhereYouStand({ back: returned?.binding === page.binding ? returned.provider
      : null });
  }
  const session = await plugin.currentSession().catch(() => null);
  if (!session) return askForMatrixId();
  // Back from a provider (this tab left for it), or part-way through in this browser:
  // carry on from there. Otherwise a returning visitor confirms who they are.
  const returned = providerReturn({ take: true });
  const back = returned?.binding === page.binding ? returned.provider : null;
  if (back) return showWhereYouStand({ back });
  const progress = await plugin.bindingProgress(page.binding).catch(() => null);
  if (progress?.providers.some((p) => p.state !== "todo")) return showWhereYouStand();
  offerSession(session);
}

start().catch(showStartupProblem);
