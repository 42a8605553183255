// Small DOM helpers for the invite page: states, announcements, field errors, countdowns.

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
// or failed, and announces it.
export function progress(listId, stateId, names) {
  const items = names.map((name) => el("li", {}, name));
  $(listId).replaceChildren(...items);
  showState(stateId);
  let next = 0;
  return {
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

export function formatDate(ms) {
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
