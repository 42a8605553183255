// The invite link's page: explains the link, proves the visitor's Matrix ID
// (matrix-signin.js), claims the link and shows how the invite went. Every failure lands
// in a state that says what happened and what to do next.

import { waitForInvites, showOutcome } from "./invites.js";
import { LINK_PROBLEMS, readLinkToken, takeSsoReturn } from "./link-token.js";
import {
  askForMatrixId, finishSso, offerSession, setUpMatrixSignIn,
} from "./matrix-signin.js";
import * as plugin from "./plugin-api.js";
import {
  onLinkUnreadable, setUpProblems, showLinkProblem, showStartupProblem, showUnexpected,
} from "./problems.js";
import * as registration from "./register.js";
import { limitsText, roomList } from "./rooms.js";
import { $, copyButton, hideStates, showSteps } from "./ui.js";

const CLAIM_STEPS = ["Claiming your invite", "Waiting for the invite"];

const page = { token: "", link: null };

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

// ---- claim and result ---------------------------------------------------------------

async function claimAndWait(steps = showSteps(CLAIM_STEPS)) {
  try {
    const claim = await steps.run(() => plugin.claimLink(page.token));
    const roomIds = claim.rooms.map((room) => room.room_id);
    const invites = await steps.run(() => waitForInvites(roomIds));
    showOutcome(invites, {
      bot: page.link.bot.user_id,
      checkAgain: () => claimAndWait(),
      retry: () => claimAndWait(),
      retryAdvice: "Once they have fixed it, try again: it does not use up the link.",
    });
  } catch (error) {
    if (error instanceof plugin.PluginError && error.errcode === "M_MISSING_TOKEN") {
      return askForMatrixId();  // the web session ended: prove the Matrix ID again
    }
    showUnexpected(error, () => claimAndWait());
  }
}

// ---- start --------------------------------------------------------------------------

async function start() {
  // Another link pasted into this tab changes only the fragment: start over for it.
  window.addEventListener("hashchange", () => location.reload());
  setUpProblems({ back: () => askForMatrixId() });
  setUpMatrixSignIn({
    submitLabel: "Sign in and join",
    nextSteps: CLAIM_STEPS,
    fragment: () => page.token,
    onSignedIn: (userId, steps) => claimAndWait(steps ?? undefined),
  });
  registration.setUpRegistration({
    kind: "link",
    value: () => page.token,
    nextSteps: ["Admitting your new account", ...CLAIM_STEPS],
    onChosen: () => registration.showAccountForm(),
    // The token admits the account and claims the link (which frees the use it held);
    // claiming again then waits for the invite as any claim does, spending nothing.
    onAccount: async (userId, steps, token) => {
      try {
        await steps.run(() => registration.claimAccount(token, page.token));
      } catch (error) {
        return showUnexpected(error, () => location.reload());
      }
      await claimAndWait(steps);
      registration.showWelcome();
    },
  });
  copyButton("copy-claim", "claim-command", "Copied. Paste it into a direct chat with the bot.");

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
  if (sso) return finishSso(sso);
  await registration.offerRegistration();
  const session = await plugin.currentSession().catch(() => null);
  if (session) return offerSession(session);
  askForMatrixId();
}

start().catch(showStartupProblem);
