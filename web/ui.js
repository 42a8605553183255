// Small DOM helpers for the pages: states, announcements, field errors, countdowns, text
// with links.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

// Shows one `.state` section and moves focus into it: to `focusId` when given, else to
// its heading, so screen readers read where the visitor now is.
export function showState(id, focusId = null) {
  for (const section of document.querySelectorAll(".state")) section.hidden = section.id !== id;
  const target = focusId ? $(focusId) : $(id).querySelector("h2");
  target?.focus();
}

// Hides every `.state` section (while something loads).
export function hideStates() {
  for (const section of document.querySelectorAll(".state")) section.hidden = true;
}

// Polite screen-reader announcement of progress (the #announcer live region).
export function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  // A fresh text node after a tick, so the same sentence twice is still read.
  setTimeout(() => { region.textContent = text; }, 30);
}

// A "Copy" button for the text of `sourceId` (the message to send the bot).
export function copyButton(buttonId, sourceId, copiedMessage) {
  $(buttonId).addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($(sourceId).textContent);
      announce(copiedMessage);
      $(buttonId).textContent = "Copied";
    } catch {
      announce("Copying is not allowed here: select the message and copy it yourself.");
    }
  });
}

export function setFieldError(inputId, errorId, message) {
  const input = $(inputId);
  const error = $(errorId);
  error.textContent = message || "";
  error.hidden = !message;
  if (message) {
    input.setAttribute("aria-invalid", "true");
    error.setAttribute("role", "alert");
  } else {
    input.removeAttribute("aria-invalid");
    error.removeAttribute("role");
  }
}

// Keeps `button` disabled for `seconds`, showing the time left; returns a cancel function.
export function holdButton(button, seconds, label) {
  const original = label ?? button.textContent;
  let left = seconds;
  button.disabled = true;
  const render = () => { button.textContent = `${original} (wait ${left} s)`; };
  render();
  const timer = setInterval(() => {
    left -= 1;
    if (left > 0) {
      render();
      return;
    }
    clearInterval(timer);
    button.disabled = false;
    button.textContent = original;
    announce("You can try again now.");
  }, 1000);
  return () => {
    clearInterval(timer);
    button.disabled = false;
    button.textContent = original;
  };
}

// One countdown at a time on a page: a new hold (or release) ends the one running.
let releaseCurrent = null;

export function holdOnly(button, seconds, label) {
  releaseHold();
  releaseCurrent = holdButton(button, seconds, label);
}

export function releaseHold() {
  releaseCurrent?.();
  releaseCurrent = null;
}

export function setBusy(button, busyText) {
  const original = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = busyText;
  return () => {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = original;
  };
}

// A list of steps shown in `stateId`; run(action) marks the next step current, then done
// or failed, and announces it; relabel(text) renames (and announces) the current step
// when the action learns what it is waiting for.
export function progress(listId, stateId, names) {
  const items = names.map((name) => el("li", {}, name));
  $(listId).replaceChildren(...items);
  showState(stateId);
  let next = 0;
  return {
    relabel(text) {
      const item = items[Math.max(next - 1, 0)];
      if (item.textContent === text) return;
      item.textContent = text;
      announce(text);
    },
    async run(action) {
      const item = items[next++];
      item.setAttribute("aria-current", "step");
      announce(item.textContent);
      try {
        const result = await action();
        item.classList.add("done");
        return result;
      } catch (error) {
        item.classList.add("failed");
        throw error;
      } finally {
        item.removeAttribute("aria-current");
      }
    },
  };
}

// The page's own progress list (#steps in #state-progress), shown with these steps.
export const showSteps = (names) => progress("steps", "state-progress", names);

export function formatDate(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// A sentence from a provider's words ("you are not in team core of matrix-org"): a capital
// first letter and a full stop, unless it has them.
export function sentence(text) {
  const trimmed = String(text ?? "").trim();
  if (!trimmed) return "";
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

// Text whose web addresses become links (remedies say "Open https://…, press Request"):
// only http(s) addresses, never a trailing full stop, comma or bracket, and each link
// opens without telling the other site where it came from.
const WEB_ADDRESS = /\bhttps?:\/\/[^\s<>"']+/g;
const NOT_AT_THE_END = /[.,;:!?)\]}'"\u2019\u201d]+$/u;

export function textWithLinks(text) {
  const nodes = [];
  let at = 0;
  for (const match of String(text ?? "").matchAll(WEB_ADDRESS)) {
    const href = match[0].replace(NOT_AT_THE_END, "");
    if (href.endsWith("://")) continue;  // nothing after the scheme: not an address
    nodes.push(match.input.slice(at, match.index));
    nodes.push(el("a", { href, rel: "noopener noreferrer" }, href));
    at = match.index + href.length;
  }
  nodes.push(String(text ?? "").slice(at));
  return nodes.filter((node) => node !== "");
}
