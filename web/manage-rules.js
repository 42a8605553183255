// The rule builder of a new binding: per rule, a provider, then the rule's kind, then its
// fields (from the shapes the provider gives, e.g. "team:ORG/TEAM" or
// "repo:OWNER/REPO[:LEVEL]"), or the rule typed whole. As the admin types, each rule is
// checked by the server (`rules/check`, debounced) and said back in words, as `bind`
// replies; every rule must hold (AND). The builder knows no rule of its own: the server
// parses and words them all.

import * as manage from "./manage-api.js";
import { errorSlot, isSessionEnded, panel, showError } from "./manage-ui.js";
import { announce, el, sentence } from "./ui.js";

const CHECK_DELAY_MS = 400;
const MAX_RULES = 5;
const TYPED = "";  // the kind value of "type the rule yourself"

// A shape's parts: literal text, and fields (optional inside [...]); "<server ID>" and
// "ORG" are both fields.
export function parseShape(shape) {
  const parts = [];
  let optional = 0;
  const pattern = /(\[)|(\])|<([^>]+)>|([A-Z][A-Z0-9_]*)|([^[\]<A-Z]+)/g;
  for (const [, open, close, angled, upper, literal] of String(shape).matchAll(pattern)) {
    if (open) optional += 1;
    else if (close) optional = Math.max(optional - 1, 0);
    else if (angled || upper) parts.push({ field: angled || upper, optional: optional > 0 });
    else parts.push({ literal, optional: optional > 0 });
  }
  return parts;
}

const fieldLabel = (name) => sentence(name.replaceAll("_", " ").toLowerCase()).replace(/\.$/, "");

// The rule's text from a shape and the values typed: an optional group is left out while
// its fields are empty.
export function composeRule(parts, values) {
  let text = "";
  let group = "";
  let groupFilled = true;
  const flush = () => {
    if (group && groupFilled) text += group;
    group = "";
    groupFilled = true;
  };
  parts.forEach((part, index) => {
    if (!part.optional) {
      flush();
      text += part.literal ?? (values[index] || "").trim();
      return;
    }
    if (part.literal !== undefined) group += part.literal;
    else {
      const value = (values[index] || "").trim();
      if (!value) groupFilled = false;
      group += value;
    }
  });
  flush();
  return text;
}

// What a provider says its rules look like: [{kind, shape, hint}] (an entry may be the
// shape alone); its kind is the shape's first word.
function shapesOf(provider) {
  const list = provider.rules || provider.shapes || [];
  return list.map((item) => {
    const shape = typeof item === "string" ? item : item.shape || item.form || "";
    const kind = (typeof item === "object" && item.kind) || shape.split(":")[0];
    const about = typeof item === "object" ? item : {};
    return { kind, shape, label: about.label || shape, hint: about.hint || "" };
  }).filter((item) => item.shape);
}

// ---- one rule -------------------------------------------------------------------------

function ruleRow(builder, number) {
  const id = `rule-${builder.serial++}`;
  const providers = panel.providers || [];
  const provider = el("select", { id: `${id}-provider` },
    ...providers.map((p) => el("option", { value: p.id }, p.name || p.id)));
  const kind = el("select", { id: `${id}-kind` });
  const fields = el("div", { class: "rule-fields" });
  const words = el("p", { id: `${id}-words`, class: "rule-words" });
  const error = errorSlot(`${id}-error`);
  const remove = el("button", { type: "button", class: "link inline remove-rule" },
    "Remove this rule");
  const legend = el("legend", {}, `Rule ${number}`);
  const node = el("fieldset", { class: "rule", id },
    legend,
    el("div", { class: "field-pair" },
      el("div", { class: "field" }, el("label", { for: provider.id }, "Provider"), provider),
      el("div", { class: "field" }, el("label", { for: kind.id }, "Kind of rule"), kind)),
    fields, words, error, remove);
  const row = { node, legend, provider, kind, fields, words, error, inputs: [], parts: null,
    text: "", valid: false, description: "", timer: null, asked: 0, remove };

  const fillKinds = () => {
    const chosen = providers.find((p) => p.id === provider.value);
    const shapes = chosen ? shapesOf(chosen) : [];
    row.shapes = shapes;
    kind.replaceChildren(...shapes.map((s) => el("option", { value: s.kind }, s.label)),
      el("option", { value: TYPED }, "Type the rule yourself"));
    fillFields();
  };
  const fillFields = () => {
    const shape = row.shapes.find((s) => s.kind === kind.value);
    row.parts = shape ? parseShape(shape.shape) : null;
    row.inputs = [];
    const describedBy = `${words.id} ${error.id}`;
    const made = [];
    if (row.parts) {
      row.parts.forEach((part, index) => {
        if (part.field === undefined) return;
        const inputId = `${id}-field-${index}`;
        const input = el("input", { id: inputId, spellcheck: "false", autocapitalize: "off",
          "aria-describedby": describedBy, "data-index": index });
        made.push(el("div", { class: "field" },
          el("label", { for: inputId }, fieldLabel(part.field),
            part.optional ? el("span", { class: "optional" }, " (optional)") : null),
          input));
        row.inputs[index] = input;
      });
    } else {
      const input = el("input", { id: `${id}-text`, spellcheck: "false",
        autocapitalize: "off", "aria-describedby": `${id}-text-hint ${describedBy}` });
      made.push(el("div", { class: "field" },
        el("label", { for: input.id }, "The rule"),
        el("p", { id: `${id}-text-hint`, class: "hint" },
          "As after the provider in !invitebot bind, e.g. team:matrix-org/core."),
        input));
      row.inputs = [input];
    }
    if (shape?.hint) made.push(el("p", { class: "hint" }, shape.hint));
    fields.replaceChildren(...made);
    for (const input of fields.querySelectorAll("input")) {
      input.addEventListener("input", () => scheduleCheck(builder, row));
    }
    scheduleCheck(builder, row);
  };
  provider.addEventListener("change", fillKinds);
  kind.addEventListener("change", fillFields);
  remove.addEventListener("click", () => builder.removeRow(row));
  fillKinds();
  return row;
}

function ruleText(row) {
  if (!row.parts) return (row.inputs[0]?.value || "").trim();
  const values = row.parts.map((part, index) => row.inputs[index]?.value || "");
  const missing = row.parts.some((part, index) => part.field !== undefined && !part.optional &&
    !values[index].trim());
  return missing ? "" : composeRule(row.parts, values);
}

// The whole rule as `bind` takes it: "github team:matrix-org/core".
const fullRule = (row) => `${row.provider.value} ${row.text}`;

function scheduleCheck(builder, row) {
  clearTimeout(row.timer);
  row.valid = false;
  row.text = ruleText(row);
  builder.changed();
  if (!row.text) {
    row.words.textContent = "";
    showError(row.error, "");
    return;
  }
  row.timer = setTimeout(() => checkRow(builder, row), CHECK_DELAY_MS);
}

async function checkRow(builder, row) {
  const asked = ++row.asked;
  const rule = fullRule(row);
  let answer;
  try {
    answer = await manage.checkRules(rule);
  } catch (error) {
    if (asked !== row.asked) return;
    if (isSessionEnded(error)) return panel.signInAgain();
    row.words.textContent = "";
    showError(row.error, error.message);
    builder.changed();
    return;
  }
  if (asked !== row.asked) return;  // the admin typed on: a newer check is coming
  showError(row.error, "");
  row.valid = true;
  row.description = answer.description;
  row.words.textContent = `Admits ${answer.description}.`;
  announce(`${row.legend.textContent}: admits ${answer.description}.`);
  builder.changed();
}

// ---- the builder ------------------------------------------------------------------------

// Once every rule holds, the whole binding in words, as `bind` would reply (the server
// joins the rules' words).
async function sayTheWhole(builder) {
  const asked = ++builder.asked;
  builder.summary.textContent = "";
  if (!builder.ready()) return;
  if (builder.rows.length === 1) {
    builder.summary.textContent = `This binding admits ${builder.rows[0].description}.`;
    return;
  }
  try {
    const answer = await manage.checkRules(builder.rules());
    if (asked === builder.asked) {
      builder.summary.textContent = `This binding admits ${answer.description}.`;
    }
  } catch (error) {
    if (asked === builder.asked) builder.summary.textContent = error.message;
  }
}

export function ruleBuilder() {
  const list = el("div", { class: "rules" });
  const add = el("button", { type: "button", class: "secondary small" }, "Add a rule (and)");
  const summary = el("p", { class: "rule-summary", id: "rules-summary" });
  const builder = {
    serial: 0, rows: [], asked: 0, summary,
    node: el("div", { class: "rule-builder" }, list, el("div", { class: "actions" }, add),
      summary),
    changed() {
      this.rows.forEach((row, index) => {
        row.legend.textContent = `Rule ${index + 1}`;
        row.remove.hidden = this.rows.length === 1;
      });
      add.hidden = this.rows.length >= MAX_RULES;
      sayTheWhole(this);
    },
    ready() {
      return this.rows.length > 0 && this.rows.every((row) => row.valid);
    },
    // The binding's rules as `bind` takes them: "github team:o/t and patreon tier:Gold".
    rules() {
      return this.rows.map(fullRule).join(" and ");
    },
    addRow() {
      const row = ruleRow(this, this.rows.length + 1);
      this.rows.push(row);
      list.append(row.node);
      this.changed();
      return row;
    },
    removeRow(row) {
      this.rows = this.rows.filter((r) => r !== row);
      row.node.remove();
      this.changed();
      add.focus();
      announce("Rule removed.");
    },
    firstProblem() {
      return this.rows.find((row) => !row.valid);
    },
  };
  add.addEventListener("click", () => {
    const row = builder.addRow();
    row.provider.focus();
    announce(`${row.legend.textContent} added.`);
  });
  builder.addRow();
  return builder;
}
