// The room's bindings in the panel: each with its rules in words, its link, what happens
// when someone stops qualifying (policy, grace), "Re-check now" and the last re-check;
// unbind (after a confirmation); and a new binding through the rule builder.

import * as manage from "./manage-api.js";
import { ruleBuilder } from "./manage-rules.js";
import {
  act, confirmStep, copyRow, errorSlot, field, inWords, notesOf, otherRoomsChoice, othersText,
  panel, registerNote, registerSwitch, roomName, showError,
} from "./manage-ui.js";
import { $, announce, el, formatDate, sentence } from "./ui.js";

const POLICIES = [
  ["notify", "Tell the admins (notify)"],
  ["kick", "Remove them from the room (kick)"],
  ["dry-run", "Only write it in the audit log (dry-run)"],
];

// 259200 → "3d"; the form takes the same words as `!invitebot policy … --grace 3d`.
function graceText(seconds) {
  if (!seconds) return "";
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

// A re-check's outcome (RecheckOutcome.outcome) in words; its detail is in words already.
const OUTCOMES = {
  ok: "done", incomplete: "stopped before the end", shrunk: "stopped: the list shrank too much",
  not_listable: "not possible", busy: "already running", removed: "binding removed",
};

function outcomeText({ outcome, detail, calls }) {
  const count = calls ? ` (${calls === 1 ? "one call" : `${calls} calls`} to the provider)` : "";
  const said = OUTCOMES[outcome] || outcome || "finished";
  return `${said}${count}.${detail ? ` ${sentence(detail)}` : ""}`;
}

function recheckText(last) {
  if (!last) return "Not re-checked yet.";
  return `Last re-check ${formatDate(last.at)}: ${outcomeText(last)}`;
}

function policyForm(binding) {
  const prefix = `binding-${binding.id}`;
  const select = el("select", { id: `${prefix}-policy` },
    ...POLICIES.map(([value, label]) => el("option",
      { value, selected: value === binding.policy }, label)));
  const grace = field(`${prefix}-grace`, "Grace period", { optional: true,
    value: graceText(binding.grace_seconds), spellcheck: "false", autocapitalize: "off",
    hint: "How long someone may stay after they stop qualifying, e.g. 3d. Empty: none." });
  const error = errorSlot(`${prefix}-policy-error`);
  const save = el("button", { type: "submit", class: "secondary small",
    id: `${prefix}-policy-save` }, "Save");
  const notes = el("div", { id: `${prefix}-policy-notes` });
  const form = el("form", { class: "policy-form", novalidate: true },
    el("div", { class: "field-pair" },
      el("div", { class: "field" },
        el("label", { for: select.id }, "When someone stops qualifying"), select),
      grace.node),
    notes, error, el("div", { class: "actions" }, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const graceText = grace.input.value.trim();
    const said = `Saved: ${select.selectedOptions[0].textContent}` +
      `${graceText ? `, after a grace period of ${graceText}` : ""}.`;
    act(save, "Saving…", error,
      () => manage.setPolicy(panel.roomId, binding.id, select.value, graceText),
      async (answer) => {
        await panel.reload(save.id, said);
        // What the bot lacks in the rooms of a space for this policy, as the reply says.
        $(notes.id)?.replaceChildren(...notesOf(answer.notes));
      });
  });
  return form;
}

function recheckBlock(binding) {
  const prefix = `binding-${binding.id}`;
  const outcome = el("p", { id: `${prefix}-recheck-outcome`, class: "recheck-outcome",
    hidden: true });
  const error = errorSlot(`${prefix}-recheck-error`);
  const button = el("button", { type: "button", class: "secondary small",
    id: `${prefix}-recheck` }, "Re-check now");
  button.addEventListener("click", () => act(button, "Re-checking…", error,
    () => manage.recheckNow(panel.roomId, binding.id),
    async (answer) => {
      const said = `Re-check now: ${outcomeText(answer)}`;
      await panel.reload(button.id, "");
      const shown = $(outcome.id);
      if (shown) {
        shown.textContent = said;
        shown.hidden = false;
      }
      announce(said);
    }));
  return el("div", { class: "recheck" },
    el("p", { class: "hint" }, recheckText(binding.last_recheck),
      binding.next_recheck_at ? ` Next: ${formatDate(binding.next_recheck_at)}.` : ""),
    outcome, error, el("div", { class: "actions" }, button));
}

function bindingItem(binding) {
  const prefix = `binding-${binding.id}`;
  const error = errorSlot(`${prefix}-error`);
  const unbind = el("button", { type: "button", class: "secondary small", id: `${prefix}-unbind` },
    "Unbind");
  unbind.addEventListener("click", () => confirmStep(unbind, {
    question: "Unbind? Its link stops working; people already in stay.",
    yes: "Unbind it",
    onYes: (button) => act(button, "Unbinding…", error,
      () => manage.removeBinding(panel.roomId, binding.id),
      () => panel.reload("bindings-title", "The binding is removed.")),
  }));
  const rooms = (binding.rooms || []).map(roomName);
  if (binding.hidden_rooms) rooms.push(othersText(binding.hidden_rooms));
  const rules = binding.rules || [];
  return el("li", { class: "panel-item", id: prefix },
    el("div", { class: "item-head" },
      el("strong", { class: "item-name" }, sentence(`open to ${binding.description}`)),
      el("span", { class: "badge" }, binding.policy || "notify")),
    rules.length > 1 ? el("ul", { class: "rule-list" },
      ...rules.map((rule) => el("li", {}, `${rule.provider_name}: ${rule.text}`))) : null,
    rules.length === 1 ? el("p", { class: "hint" },
      `${rules[0].provider_name}: ${rules[0].text}`) : null,
    rooms.length > 1 ? el("p", { class: "hint" }, `For ${inWords(rooms)}.`) : null,
    registerNote(binding),
    binding.url ? copyRow(binding.url, { id: `${prefix}-url`,
      copied: "Copied the binding's link." }) : null,
    policyForm(binding),
    recheckBlock(binding),
    el("div", { class: "actions" }, unbind),
    error);
}

// ---- a new binding ----------------------------------------------------------------------

function bindingForm() {
  const error = errorSlot("binding-form-error");
  const submit = el("button", { type: "submit", id: "binding-create" }, "Create the binding");
  const builder = ruleBuilder();
  const rooms = otherRoomsChoice("binding");
  const register = registerSwitch("binding");
  const form = el("form", { id: "binding-form", novalidate: true, class: "panel-form" },
    el("p", { class: "hint" }, "Someone is let in when every rule holds."),
    builder.node, rooms.node, register.node, error, el("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, "");
    const waiting = await builder.firstProblem();
    if (waiting) {
      showError(error, "Every rule needs its fields, and the server must accept it: see " +
        `${waiting.legend.textContent}.`);
      (waiting.node.querySelector("[aria-invalid], input") || waiting.provider).focus();
      return;
    }
    act(submit, "Creating…", error,
      () => manage.createBinding(panel.roomId, builder.rules(), rooms.chosen(),
        register.checked()),
      async (answer) => {
        $("bindings-create").open = false;
        $("bindings-form-slot").replaceChildren(bindingForm());
        await panel.reload(null, "");
        showNewBinding(answer);
      });
  });
  return form;
}

function showNewBinding({ binding, url, notes = [] }) {
  const words = binding?.description ? sentence(`open to ${binding.description}`) : "";
  const box = el("div", { class: "new-secret", id: "binding-new" },
    el("p", { class: "item-name" }, "The binding is made"),
    words ? el("p", {}, words) : null,
    ...notesOf(notes),
    el("p", {}, "Share this link: people sign in there and are let in when they qualify."),
    copyRow(url, { id: "binding-new-url", copied: "Copied the binding's link." }));
  $("bindings-new").replaceChildren(box);
  box.querySelector("button").focus();
  announce(`The binding is made. ${words}`);
}

export function renderBindings(details) {
  const bindings = details.bindings || [];
  $("bindings-list").replaceChildren(...(bindings.length ? bindings.map(bindingItem)
    : [el("li", { class: "hint empty" }, "No bindings yet.")]));
  const slot = $("bindings-form-slot");
  if ($("binding-form") && slot.dataset.room === panel.roomId) return;
  slot.dataset.room = panel.roomId;
  if (panel.providersError || !panel.providers) {
    slot.replaceChildren(el("p", { class: "field-error" }, panel.providersError ||
      "The providers could not be read: reload the page."));
    return;
  }
  if (panel.providersUnavailable) {
    slot.replaceChildren(el("p", { class: "field-error" }, panel.providersUnavailable));
    return;
  }
  if (!panel.providers.length) {
    slot.replaceChildren(el("p", {}, "No provider is set up on this bot yet: its operator " +
      "adds them to the instance's config. Invite links work meanwhile."));
    return;
  }
  slot.replaceChildren(bindingForm());
}
