// Where a page lands when something stops it: a problem it can retry (with a countdown
// when the server asked to wait), a link that no longer works (no retry), or a start that
// failed in a way nothing expected (a reload). Every page has the same #state-problem and
// #state-link-problem markup; what "back" means is the page's (usually: sign in again).

import * as hs from "./homeserver.js";
import * as plugin from "./plugin-api.js";
import { roomList } from "./rooms.js";
import { $, announce, el, holdOnly, releaseHold, showState } from "./ui.js";

const actions = { retry: null, back: null, defaultBack: null };

// `back`: what "Use a different Matrix ID" does unless a problem says otherwise.
export function setUpProblems({ back }) {
  actions.defaultBack = back;
  $("problem-retry").addEventListener("click", () => actions.retry?.());
  $("problem-back").addEventListener("click", () => actions.back?.());
}

export function showLinkProblem(message) {
  $("link-loading").hidden = true;
  // What the link would have needed and allowed no longer matters: only the rooms stay.
  for (const terms of document.querySelectorAll(".link-terms")) terms.hidden = true;
  $("link-problem-text").textContent = message;
  $("bot-alternative").hidden = true;
  showState("state-link-problem");
  announce(message);
}

// `advice` is text, or nodes (text with links); `rooms` are refused invites.
export function showProblem(title, text, { advice = "", rooms = [], retry = null,
  retryLabel = "Try again", back = actions.defaultBack, waitSeconds = null, suggestBot = false,
  hideBot = false } = {}) {
  releaseHold();
  $("problem-title").textContent = title;
  $("problem-text").textContent = text;
  $("problem-advice").replaceChildren(...(Array.isArray(advice) ? advice : [advice]));
  $("problem-rooms").replaceChildren(...roomList(rooms, (room) => [
    el("span", { class: "error" }, room.error || "The invite did not go through.")]));
  for (const item of $("problem-rooms").children) item.classList.add("failed");
  actions.retry = retry;
  actions.back = back;
  const retryButton = $("problem-retry");
  retryButton.hidden = !retry;
  retryButton.textContent = retryLabel;
  $("problem-back").hidden = !back;
  // (The admin panel has no message to the bot: nothing to open or hide there.)
  const bot = $("bot-alternative");
  if (bot && suggestBot && !bot.hidden) bot.open = true;
  if (bot && hideBot) bot.hidden = true;  // the bot would meet the same refusal  // the bot would meet the same refusal
  showState("state-problem");
  announce(`${title}. ${text}`);
  if (retry && waitSeconds) holdOnly(retryButton, waitSeconds, retryLabel);
}

export function showUnexpected(error, retry, options = {}) {
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

// The link could not be looked at: a refusal of the link itself is final; too many
// attempts, an outage or a lost connection can be retried (after the wait, if any).
export function onLinkUnreadable(error, retry) {
  const temporary = !(error instanceof plugin.PluginError) || error.status === 429 ||
    error.status >= 500 || error.status === 0;
  if (!temporary) return showLinkProblem(error.message);
  $("link-loading").hidden = true;
  return showUnexpected(error, retry, { back: null });
}

// Whatever went wrong that nothing above expected, the visitor never watches a spinner
// forever: they get a problem state and a way to start again.
export function showStartupProblem() {
  if ($("link-loading")) $("link-loading").hidden = true;
  showProblem("This page could not start",
    "Something unexpected stopped the invite page. Reload it to try again.",
    { retry: () => location.reload(), retryLabel: "Reload the page", back: null });
}
