// What happened in the room, in the panel: the people let in and how (which link or
// binding, when), invites waiting and failed (with the reason, and a Retry), and the
// room's audit log.

import { linkLabel } from "./manage-links.js";
import * as manage from "./manage-api.js";
import { act, errorSlot, panel } from "./manage-ui.js";
import { $, el, formatDate, sentence } from "./ui.js";

function howText(person, details) {
  if (person.link_id !== undefined && person.link_id !== null) {
    const link = details.links.find((l) => l.id === person.link_id);
    return `through the invite link ${link ? linkLabel(link) : person.link_id}`;
  }
  if (person.binding) {
    const binding = details.bindings.find((b) => b.id === person.binding);
    return binding ? `through the binding for ${binding.description}`
      : `through binding ${person.binding}`;
  }
  return person.how ? `through ${person.how}` : "";
}

function personItem(person, details) {
  const how = howText(person, details);
  return el("li", { class: "person", "data-how": person.how || null },
    el("span", { class: "mxid" }, person.user_id),
    el("span", { class: "how" }, ` ${how}${person.at ? `, on ${formatDate(person.at)}` : ""}.`),
    ...(person.accounts || []).map((account) =>
      el("span", { class: "account" }, ` ${providerName(account.provider, details)}: ${account.name}.`)));
}

// The provider's name as the room's bindings say it ("GitHub"), else its id.
function providerName(providerId, details) {
  for (const binding of details.bindings || []) {
    const rule = (binding.rules || []).find((r) => r.provider === providerId);
    if (rule) return rule.provider_name;
  }
  return providerId;
}

const empty = (text) => el("li", { class: "hint empty" }, text);

function pendingItem(invite) {
  const why = invite.error ? ` ${sentence(invite.error)}` : "";
  return el("li", { class: "invite" },
    el("span", { class: "mxid" }, invite.user_id),
    el("span", { class: "how" },
      invite.updated_at ? ` queued, last tried ${formatDate(invite.updated_at)}.` : " queued.",
      why));
}

function failedItem(invite, index) {
  const error = errorSlot(`invite-${index}-error`);
  const retry = el("button", { type: "button", class: "secondary small",
    id: `invite-${index}-retry` }, "Retry");
  retry.addEventListener("click", () => act(retry, "Retrying…", error,
    () => manage.retryInvite(panel.roomId, invite.user_id),
    () => panel.reload("invites-title", `The invite to ${invite.user_id} is queued again.`)));
  return el("li", { class: "invite failed" },
    el("span", { class: "mxid" }, invite.user_id),
    el("span", { class: "why" }, ` ${sentence(invite.error || invite.errcode)}`),
    invite.updated_at ? el("span", { class: "when" }, ` (${formatDate(invite.updated_at)})`)
      : null,
    el("div", { class: "actions" }, retry),
    error);
}

// The audit log's actions in words: "binding_created" reads "binding created".
const actionWords = (action) => String(action || "").replaceAll("_", " ");

function auditItem(entry) {
  return el("li", {},
    el("span", { class: "when" }, formatDate(entry.at)),
    " ",
    el("strong", {}, actionWords(entry.action)),
    entry.actor ? el("span", {}, ` by ${entry.actor}`) : null,
    entry.target ? el("span", {}, `: ${entry.target}`) : null,
    entry.detail ? el("span", { class: "detail" }, ` (${entry.detail})`) : null);
}

export function renderActivity(details) {
  const people = details.people || [];
  $("people-list").replaceChildren(...(people.length
    ? people.map((person) => personItem(person, details))
    : [empty("Nobody has come in through a link or binding yet.")]));
  const { pending = [], failed = [] } = details.invites || {};
  $("invites-pending").replaceChildren(...(pending.length ? pending.map(pendingItem)
    : [empty("None.")]));
  $("invites-failed").replaceChildren(...(failed.length ? failed.map(failedItem)
    : [empty("None.")]));
  const audit = details.audit || [];
  $("audit-list").replaceChildren(...(audit.length ? audit.map(auditItem)
    : [empty("Nothing recorded yet.")]));
}
