// What the admin panel's sections share: the room on show and the rooms the admin manages,
// refusals said where the action was, a confirmation step, a copy row, room names.

import { listProviders } from "./manage-api.js";
import { PluginError } from "./plugin-api.js";
import { announce, el, setBusy } from "./ui.js";

// Set by manage.js: who is signed in, their rooms, the room on show and its details,
// `reload(focusId, message)` (fetch the room again, re-render, focus, announce) and
// `signInAgain()` (the web session ended).
export const panel = {
  userId: "", entered: false, rooms: [], providers: null, providersUnavailable: "",
  providersError: "", registration: null, roomId: "", details: null,
  reload: async () => {}, signInAgain: () => {},
};

export const isSessionEnded = (error) =>
  error instanceof PluginError && error.errcode === "M_MISSING_TOKEN";

// A room's name as the admin knows it: from the room list, else its ID. `ref` is a room
// ID or a room object ({room_id, name}).
export function roomName(ref) {
  if (ref && typeof ref === "object") return ref.name || ref.room_id || "";
  const known = panel.rooms.find((room) => room.room_id === ref);
  return known?.name || String(ref ?? "");
}

// Rooms of a link or binding that the admin does not manage are only counted.
export const othersText = (count) =>
  count === 1 ? "one room you do not manage" : `${count} rooms you do not manage`;

export function inWords(items) {
  if (items.length <= 2) return items.join(" and ");
  return `${items.slice(0, -1).join(", ")} and ${items.at(-1)}`;
}

// A paragraph for a refusal, hidden until there is one.
export const errorSlot = (id) => el("p", { id, class: "field-error", hidden: true });

export function showError(slot, message) {
  slot.textContent = message || "";
  slot.hidden = !message;
  if (message) slot.setAttribute("role", "alert");
  else slot.removeAttribute("role");
}

// Runs `action` for `button` (busy meanwhile); a refusal is said in `slot`, where the
// admin acted; an ended session asks for the sign-in again. Success: `after(result)`.
// Whether it succeeded.
export async function act(button, busyText, slot, action, after) {
  showError(slot, "");
  const done = setBusy(button, busyText);
  let result;
  try {
    result = await action();
  } catch (error) {
    done();
    if (isSessionEnded(error)) panel.signInAgain();
    else showError(slot, error.message || String(error));
    return false;
  }
  done();
  await after(result);
  return true;
}

// Asks before something that cannot be undone: the `.actions` row holding the button
// becomes the question, a confirming button (focused) and "Cancel" (which, as Escape does,
// puts it back).
export function confirmStep(button, { question, yes, onYes }) {
  const row = button.closest(".actions");
  const before = [...row.childNodes];
  const restore = () => {
    row.replaceChildren(...before);
    button.focus();
  };
  const yesButton = el("button", { type: "button", class: "danger small" }, yes);
  const noButton = el("button", { type: "button", class: "secondary small" }, "Cancel");
  // Refused: the row is put back, and the refusal stays said below it.
  yesButton.addEventListener("click", async () => {
    if (!(await onYes(yesButton))) restore();
  });
  noButton.addEventListener("click", restore);
  for (const choice of [yesButton, noButton]) {
    choice.addEventListener("keydown", (event) => { if (event.key === "Escape") restore(); });
  }
  row.replaceChildren(el("span", { class: "confirm-question" }, question), yesButton, noButton);
  yesButton.focus();
  announce(question);
}

// A web address with a Copy button (and the address selectable by hand).
export function copyRow(url, { id, copied }) {
  const code = el("code", { id }, url);
  const button = el("button", { type: "button", class: "secondary small",
    "aria-describedby": id }, "Copy");
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(url);
      button.textContent = "Copied";
      announce(copied);
    } catch {
      announce("Copying is not allowed here: select the address and copy it yourself.");
    }
  });
  return el("div", { class: "copy-row" }, code, button);
}

// "Also for: …" checkboxes of the admin's other rooms, for a link or binding of several
// rooms; `chosen()` gives the room IDs ticked (this room first), or null for this one only.
export function otherRoomsChoice(prefix) {
  const others = panel.rooms.filter((room) => room.room_id !== panel.roomId);
  const boxes = others.map((room, index) => {
    const id = `${prefix}-room-${index}`;
    const box = el("input", { type: "checkbox", id, value: room.room_id });
    return { box, node: el("div", { class: "check" }, box,
      el("label", { for: id }, room.name || room.room_id)) };
  });
  const node = others.length ? el("fieldset", { class: "other-rooms" },
    el("legend", {}, "Also for these rooms (optional)"), ...boxes.map((b) => b.node)) : null;
  return {
    node,
    chosen() {
      const ticked = boxes.filter((b) => b.box.checked).map((b) => b.box.value);
      return ticked.length ? [panel.roomId, ...ticked] : null;
    },
  };
}

// A labelled field: label, hint, input, error slot; returns { node, input, error }.
export function field(id, label, { hint = "", optional = false, ...attributes } = {}) {
  const hintId = hint ? `${id}-hint` : null;
  const error = errorSlot(`${id}-error`);
  const input = el("input", { id, name: id, "aria-describedby":
    [hintId, `${id}-error`].filter(Boolean).join(" "), ...attributes });
  const node = el("div", { class: "field" },
    el("label", { for: id }, label, optional ? el("span", { class: "optional" }, " (optional)")
      : null),
    hint ? el("p", { id: hintId, class: "hint" }, hint) : null,
    input, error);
  return { node, input, error };
}

// The providers (for the rule builder) and where new accounts can be made (for the "new
// accounts" switch), read once a session; a failure is kept to be said in the bindings.
export async function ensureProviders() {
  if (panel.providers) return;
  try {
    const answer = await listProviders();
    panel.providers = answer.providers;
    panel.providersUnavailable = answer.unavailable || "";
    panel.registration = answer.registration || null;
    panel.providersError = "";
  } catch (error) {
    if (isSessionEnded(error)) throw error;
    panel.providersError = error.message;
  }
}

// The switch that offers people without a Matrix account one on the operator's server, as
// `--register` does; null when the operator set none up. `checked()`: whether it is on.
export function registerSwitch(prefix) {
  if (!panel.registration) return { node: null, checked: () => false };
  const id = `${prefix}-register`;
  const box = el("input", { type: "checkbox", id, "aria-describedby": `${id}-hint` });
  return {
    node: el("div", { class: "field" },
      el("div", { class: "check" }, box, el("label", { for: id },
        `Offer people without a Matrix account one on ${panel.registration.server_name}`)),
      el("p", { id: `${id}-hint`, class: "hint" },
        "They qualify first; only then is a single-use sign-up code made for them.")),
    checked: () => box.checked,
  };
}

export const registerNote = (item) => (item.register && panel.registration
  ? el("p", { class: "hint" },
    `Offers an account on ${panel.registration.server_name} to people without one.`)
  : null);

// What the server adds to a new link or binding, as the chat reply would (rooms of a space
// where the bot cannot act, the new-accounts offer).
export const notesOf = (notes = []) => notes.map((note) => el("p", { class: "hint" }, note));
