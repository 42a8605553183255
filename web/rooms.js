// How rooms and links are shown: room cards, the link's limits in words, the ways to open
// a room, and what a refused invite means for the person on the page.

import { el, formatDate } from "./ui.js";

export function roomList(rooms, extra = () => []) {
  return rooms.map((room) => el("li", { class: "room" },
    el("strong", { class: "room-name" }, room.name),
    room.topic ? el("span", { class: "room-topic" }, room.topic) : null,
    ...extra(room)));
}

export function limitsText(link) {
  const uses = link.uses_left === null ? "" :
    link.uses_left === 1 ? "once more" : `${link.uses_left} more times`;
  const until = link.expires_at ? `until ${formatDate(link.expires_at)}` : "";
  if (uses && until) return `This link works ${uses}, ${until}.`;
  if (uses) return `This link works ${uses}; it does not expire.`;
  if (until) return `This link works for anyone who has it, ${until}.`;
  return "This link has no use limit and does not expire.";
}

const OUTCOME_NOTES = {
  invited: "Invite sent.",
  already_invited: "You already had an invite.",
  already_joined: "You are already a member.",
};

export function openLinks(room) {
  const links = [el("a", { class: "button", href: room.matrix_to, rel: "noopener" },
    "Open with matrix.to")];
  links.push(el("a", { class: "button secondary", href: room.matrix_uri },
    "Open in my Matrix app"));
  if (room.client) {
    links.push(el("a", { class: "button secondary", href: room.client.url, rel: "noopener" },
      `Open in ${room.client.name}`));
  }
  return [el("span", { class: "room-note" }, OUTCOME_NOTES[room.outcome] || ""),
    el("div", { class: "actions" }, ...links)];
}


// What a refused invite means for the person on this page (the admins get their own text).
export const REFUSALS = {
  TPI_USER_BANNED: "You are banned from this room. Only its admins can lift the ban.",
  TPI_INVITE_BLOCKED: "Your account refuses invites. Allow invites in your Matrix app's " +
    "settings, then try again.",
  TPI_BOT_LACKS_POWER: "The bot is not allowed to invite people to this room yet.",
  TPI_ROOM_UNKNOWN: "The room no longer exists, or the bot has left it.",
};
