// The admin panel (…/manage): a room admin proves their Matrix ID (matrix-signin.js, or
// "Manage as @you?" with a session), sees the rooms where the bot is and they may invite,
// and manages one room at a time (…/manage#<room ID>, the address chat replies give):
// invite links, bindings, the people let in, invites, the audit log. Every action goes to
// the server, which judges the admin's power at that moment; a refusal is said in words
// where the action was.

import { renderBindings } from "./manage-bindings.js";
import { renderLinks } from "./manage-links.js";
import { renderActivity } from "./manage-people.js";
import * as manage from "./manage-api.js";
import { ensureProviders, isSessionEnded, panel, showError } from "./manage-ui.js";
import { takeSsoReturn } from "./link-token.js";
import {
  askForMatrixId, finishSso, offerSession, setUpMatrixSignIn,
} from "./matrix-signin.js";
import * as plugin from "./plugin-api.js";
import { setUpProblems, showProblem, showStartupProblem, showUnexpected } from "./problems.js";
import { $, announce, el, hideStates, showState } from "./ui.js";

const ROOM_ID = /^![\x21-\x7e]{1,254}$/;  // "!opaque:server", or "!opaque" in room v12
const LOAD_STEPS = ["Reading the rooms you manage"];

// The room the address names, or "" for the list of rooms.
function roomInAddress() {
  let text = location.hash.replace(/^#/, "");
  try {
    text = decodeURIComponent(text);
  } catch {
    return "";
  }
  return ROOM_ID.test(text) ? text : "";
}

const isPanelFragment = (text) => text === "" || ROOM_ID.test(text);

// ---- signed in ------------------------------------------------------------------------

async function enter(userId, steps) {
  panel.userId = userId;
  for (const node of document.querySelectorAll(".panel-user")) node.textContent = userId;
  try {
    const load = () => manage.listRooms();
    const answer = steps ? await steps.run(load) : await load();
    panel.rooms = answer.rooms;
    if (answer.user_id) panel.userId = answer.user_id;
  } catch (error) {
    if (isSessionEnded(error)) return signInAgain();
    return showUnexpected(error, () => enter(userId, null), { back: () => signOut() });
  }
  panel.entered = true;
  await route({ listed: true });
}

// What the address asks for: a room, or the list (read again, unless it just was: power
// changes, and rooms come and go).
async function route({ listed = false } = {}) {
  if (!panel.entered) return;
  const roomId = roomInAddress();
  if (roomId) return openRoom(roomId);
  return showRooms({ refresh: !listed });
}

async function signInAgain() {
  panel.entered = false;
  announce("Your session ended. Sign in again to go on.");
  askForMatrixId();
}

async function signOut() {
  panel.entered = false;
  await plugin.closeSession().catch(() => {});
  announce("Signed out.");
  askForMatrixId();
}

// ---- the rooms ------------------------------------------------------------------------

function roomItem(room) {
  return el("li", { class: "panel-room" },
    el("a", { href: `#${room.room_id}` }, room.name || room.room_id),
    room.is_space ? el("span", { class: "badge" }, "Space") : null,
    room.topic ? el("span", { class: "room-topic" }, room.topic) : null);
}

function renderRooms() {
  const rooms = panel.rooms;
  $("room-list").replaceChildren(...rooms.map(roomItem));
  $("room-list").hidden = !rooms.length;
  $("rooms-intro").hidden = !rooms.length;
  $("rooms-empty").hidden = rooms.length > 0;
}

async function showRooms({ refresh = false } = {}) {
  document.title = "Manage your rooms";
  showError($("rooms-error"), "");
  if (refresh) {
    try {
      panel.rooms = (await manage.listRooms()).rooms;
    } catch (error) {
      if (isSessionEnded(error)) return signInAgain();
      showError($("rooms-error"), error.message);
    }
  }
  renderRooms();
  showState("state-rooms");
  const count = panel.rooms.length;
  announce(count ? `You manage ${count === 1 ? "one room" : `${count} rooms`} here.`
    : "You manage no room here yet.");
}

// ---- one room -------------------------------------------------------------------------

function roomTitle(roomId) {
  const room = panel.rooms.find((r) => r.room_id === roomId);
  return room?.name || roomId;
}

async function openRoom(roomId) {
  panel.roomId = roomId;
  panel.details = null;
  const title = roomTitle(roomId);
  $("room-title").textContent = title;
  document.title = `${title}: manage`;
  $("room-summary").textContent = "";
  // A new link's address, shown once, goes with the room it was made for.
  $("links-new").replaceChildren();
  $("bindings-new").replaceChildren();
  $("room-body").hidden = true;
  $("room-refusal").hidden = true;
  $("room-loading").hidden = false;
  showState("state-room");
  await loadRoom({ announceIt: true });
}

// Fetches the room on show and renders it; `focusId` gets the focus afterwards (else the
// room's heading keeps it), `message` is announced.
async function loadRoom({ focusId = null, message = "", announceIt = false } = {}) {
  const roomId = panel.roomId;
  let details;
  try {
    await ensureProviders();
    details = await manage.roomDetails(roomId);
  } catch (error) {
    if (roomId !== panel.roomId) return;
    $("room-loading").hidden = true;
    if (isSessionEnded(error)) return signInAgain();
    $("room-body").hidden = true;
    $("room-refusal").hidden = false;
    $("room-refusal-text").textContent = error.message;
    announce(error.message);
    return;
  }
  if (roomId !== panel.roomId) return;  // the admin went elsewhere meanwhile
  panel.details = details;
  const room = details.room || {};
  const title = room.name || roomTitle(roomId);
  $("room-title").textContent = title;
  document.title = `${title}: manage`;
  $("room-summary").textContent = [room.is_space ? "A space: what you set here covers its " +
    "rooms too." : "", room.topic || ""].filter(Boolean).join(" ");
  renderLinks(details);
  renderBindings(details);
  renderActivity(details);
  $("room-loading").hidden = true;
  $("room-refusal").hidden = true;
  $("room-body").hidden = false;
  if (focusId && $(focusId)) $(focusId).focus();
  if (message) announce(message);
  else if (announceIt) announce(`${title}: ${summaryOf(details)}`);
}

function summaryOf(details) {
  const count = (n, one, many) => (n === 1 ? `one ${one}` : `${n || "no"} ${many}`);
  const active = details.links.filter((link) => link.state === "active").length;
  return `${count(active, "active invite link", "active invite links")}, ` +
    `${count(details.bindings.length, "binding", "bindings")}, ` +
    `${count(details.invites.failed.length, "failed invite", "failed invites")}.`;
}

// ---- start --------------------------------------------------------------------------

async function start() {
  panel.reload = (focusId, message) => loadRoom({ focusId, message });
  panel.signInAgain = signInAgain;
  window.addEventListener("hashchange", () => route());
  for (const button of document.querySelectorAll(".sign-out")) {
    button.addEventListener("click", signOut);
  }
  $("rooms-reload").addEventListener("click", () => showRooms({ refresh: true }));
  $("room-reload").addEventListener("click", () => loadRoom({ announceIt: true }));
  setUpProblems({ back: () => askForMatrixId() });
  setUpMatrixSignIn({
    submitLabel: "Sign in and manage",
    sessionAction: "Manage",
    nextSteps: LOAD_STEPS,
    fragment: () => roomInAddress(),
    onSignedIn: (userId, steps) => enter(userId, steps),
  });

  const sso = takeSsoReturn({ accepts: isPanelFragment });
  $("link-loading").hidden = true;
  if (sso?.lost) {
    return showProblem("Your sign-in could not be finished",
      "The sign-in came back, but this page lost track of it.",
      { retry: () => askForMatrixId(), retryLabel: "Sign in again", back: null });
  }
  if (sso) return finishSso(sso);
  hideStates();
  const session = await plugin.currentSession().catch(() => null);
  if (session) return offerSession(session);
  askForMatrixId();
}

start().catch(showStartupProblem);
