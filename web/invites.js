// The end of every page: wait for the bot's invites to the rooms, then show how they went
// (the ways to open each room, or why an invite was refused).

import * as plugin from "./plugin-api.js";
import { showProblem } from "./problems.js";
import { openLinks, REFUSALS, roomList } from "./rooms.js";
import { $, announce, showState } from "./ui.js";

const INVITE_WAIT_SECONDS = 60;

export async function waitForInvites(roomIds) {
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

// `bot`: the bot's Matrix ID (the invites come from it); `checkAgain`: look again while an
// invite is still queued; `retry` and `retryAdvice`: what "Try again" does after a refusal.
export function showOutcome(invites, { bot, checkAgain, retry, retryAdvice }) {
  const failed = invites.filter((invite) => invite.state === "failed")
    .map((invite) => ({ ...invite, error: REFUSALS[invite.errcode] || invite.error }));
  if (failed.length) {
    return showProblem("The invite did not go through",
      failed.length === 1 ? "The bot could not invite you:" : "The bot could not invite you to:",
      { rooms: failed, advice: `The room's admins have been told. ${retryAdvice}`, retry,
        back: null, hideBot: true });
  }
  const pending = invites.some((invite) => invite.state !== "done");
  const joined = invites.every((invite) => invite.outcome === "already_joined");
  $("done-title").textContent = pending ? "Your invite is on its way" :
    joined ? "You are already in" : "You are invited";
  $("done-text").textContent = pending
    ? "The bot has queued your invite; it will appear in your Matrix app within minutes."
    : `Accept the invite from ${bot} in your Matrix app, or open the room from here:`;
  $("done-rooms").replaceChildren(...roomList(invites, openLinks));
  $("done-check").hidden = !pending;
  $("done-check").onclick = checkAgain;
  $("bot-alternative").hidden = true;
  $("link-details").hidden = true;  // the result lists the rooms again, with ways to open them
  showState("state-done");
  announce(`${$("done-title").textContent}. ${$("done-text").textContent}`);
}
