// The room's invite links in the panel: each with its uses left, expiry and who joined
// through it; revoke (after a confirmation); create one (an optional name, uses, expiry,
// more rooms), whose address is shown once, with a Copy button.

import * as manage from "./manage-api.js";
import {
  act, confirmStep, copyRow, errorSlot, field, inWords, notesOf, otherRoomsChoice, othersText,
  panel, registerNote, registerSwitch, roomName, showError,
} from "./manage-ui.js";
import { $, announce, el, formatDate } from "./ui.js";

const STATES = {
  active: "Active", expired: "Expired", revoked: "Revoked", used_up: "Used up",
};

export const linkLabel = (link) => link.name || `Link ${link.id}`;

function usesText(link) {
  const used = link.uses ?? 0;
  if (link.max_uses === null || link.max_uses === undefined) {
    return `No use limit; ${used ? `used ${used === 1 ? "once" : `${used} times`}` : "not used yet"}.`;
  }
  const left = Math.max(link.max_uses - used, 0);
  return `${left} of ${link.max_uses} ${link.max_uses === 1 ? "use" : "uses"} left.`;
}

function expiryText(link) {
  if (!link.expires_at) return "Does not expire.";
  const when = formatDate(link.expires_at);
  return link.expires_at < Date.now() ? `Expired on ${when}.` : `Expires on ${when}.`;
}

function joinedList(link) {
  const joined = link.joined || [];
  if (!joined.length) return el("p", { class: "hint" }, "Nobody has joined through it yet.");
  return el("div", {},
    el("p", { class: "item-subhead" },
      `Joined through it (${joined.length}):`),
    el("ul", { class: "joined" }, ...joined.map((person) => el("li", {},
      el("span", { class: "mxid" }, person.user_id),
      el("span", { class: "when" }, ` on ${formatDate(person.at)}`)))));
}

function linkItem(link) {
  const state = link.state || (link.revoked ? "revoked" : "active");
  const error = errorSlot(`link-${link.id}-error`);
  const revoke = el("button", { type: "button", class: "secondary small",
    id: `link-${link.id}-revoke` }, "Revoke");
  revoke.addEventListener("click", () => confirmStep(revoke, {
    question: `Revoke ${linkLabel(link)}? Nobody can join with it afterwards.`,
    yes: "Revoke it",
    onYes: (button) => act(button, "Revoking…", error,
      () => manage.revokeLink(panel.roomId, link.id),
      () => panel.reload("links-title", `${linkLabel(link)} is revoked.`)),
  }));
  const rooms = (link.rooms || []).map(roomName);
  if (link.hidden_rooms) rooms.push(othersText(link.hidden_rooms));
  return el("li", { class: "panel-item", id: `link-${link.id}`, "data-state": state },
    el("div", { class: "item-head" },
      el("strong", { class: "item-name" }, linkLabel(link)),
      el("span", { class: "badge" }, STATES[state] || state)),
    el("p", {}, usesText(link), " ", expiryText(link)),
    rooms.length > 1 ? el("p", { class: "hint" }, `For ${inWords(rooms)}.`) : null,
    registerNote(link),
    joinedList(link),
    state === "active" ? el("div", { class: "actions" }, revoke) : null,
    error);
}

// ---- creating a link ------------------------------------------------------------------

function linkForm() {
  const name = field("link-name", "Name", { optional: true, maxlength: "100",
    hint: "For you and the other admins, e.g. “Newsletter, March”. Not shown to visitors." });
  const uses = field("link-uses", "Uses", { optional: true, inputmode: "numeric",
    hint: "How many people may join with it. Empty: no limit." });
  const expires = field("link-expires", "Expires after", { optional: true,
    spellcheck: "false", autocapitalize: "off",
    hint: "For example 7d, 12h or 30m, or never. Empty: this bot's usual expiry." });
  const rooms = otherRoomsChoice("link");
  const register = registerSwitch("link");
  const error = errorSlot("link-form-error");
  const submit = el("button", { type: "submit", id: "link-create" }, "Create the link");
  const form = el("form", { id: "link-form", novalidate: true, class: "panel-form" },
    name.node, el("div", { class: "field-pair" }, uses.node, expires.node), rooms.node,
    register.node, error, el("div", { class: "actions" }, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showError(uses.error, "");
    const body = {};
    if (name.input.value.trim()) body.name = name.input.value.trim();
    const usesText = uses.input.value.trim();
    if (usesText) {
      if (!/^[1-9][0-9]{0,5}$/.test(usesText)) {
        showError(uses.error, "Uses is a whole number from 1, or empty for no limit.");
        uses.input.setAttribute("aria-invalid", "true");
        uses.input.focus();
        return;
      }
      body.uses = Number(usesText);
    }
    uses.input.removeAttribute("aria-invalid");
    if (expires.input.value.trim()) body.expires = expires.input.value.trim();
    const chosen = rooms.chosen();
    if (chosen) body.rooms = chosen;
    if (register.checked()) body.register = true;
    act(submit, "Creating…", error, () => manage.createLink(panel.roomId, body),
      async (answer) => {
        form.reset();
        $("links-create").open = false;
        await panel.reload(null, "");
        showNewLink(answer);
      });
  });
  return form;
}

// The new link's address, once: focus on its Copy button.
function showNewLink({ link, url, notes = [] }) {
  const label = link ? linkLabel(link) : "The new link";
  const box = el("div", { class: "new-secret", id: "link-new" },
    el("p", { class: "item-name", id: "link-new-title" }, `${label} is ready`),
    el("p", {}, "Copy it now: this page shows it only once. Whoever has it may join."),
    ...notesOf(notes),
    copyRow(url, { id: "link-new-url", copied: "Copied the invite link." }));
  $("links-new").replaceChildren(box);
  box.querySelector("button").focus();
  announce(`${label} is ready. Copy it now: it is shown only once.`);
}

export function renderLinks(details) {
  const links = details.links || [];
  $("links-list").replaceChildren(...(links.length ? links.map(linkItem)
    : [el("li", { class: "hint empty" }, "No invite links yet.")]));
  // The form is kept while it is open (the admin may be typing); a new room gets its own.
  if (!$("link-form") || $("links-form-slot").dataset.room !== panel.roomId) {
    $("links-form-slot").replaceChildren(linkForm());
    $("links-form-slot").dataset.room = panel.roomId;
  }
}
