// The rule builder of a new binding: per rule, a provider, then the rule's kind, then its
// fields (from the shapes the provider gives, e.g. "team:ORG/TEAM"), or the rule typed
// whole. As the admin types, each rule is checked by the server (`rules/check`, debounced)
// and said back in words, as `bind` replies; every rule must hold (AND). The builder knows
// no rule of its own: the server parses and words them all.

import * as manage from "./manage-api.js";
import { errorSlot, isSessionEnded, panel, showError } from "./manage-ui.js";
import { announce, el } from "./ui.js";

const CHECK_DELAY_MS = 400;
const MAX_RULES = 5;
const TYPED = "";  // the kind value of "type the rule yourself"

// What a provider says its rules look like (`rule_kinds`): per kind a prefix ("team:"),
// its usage ("team:ORG/TEAM"), what it means, and its fields, each with the separator
// written before its value ("/"), whether it may be left out, and its choices if any.
const shapesOf = (provider) => provider.rule_kinds || [];

// The rule's text from a shape and the values typed: the prefix, then each field given a
// value after its separator; "" while a field it needs is empty.
export function composeRule(shape, values) {
  let text = shape.prefix;
  for (const [index, field] of (shape.fields || []).entries()) {
    const value = (values[index] || "").trim();
    if (!value && !field.optional) return "";
    if (value) text += `${field.separator || ""}${value}`;
  }
  return text;
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
  const row = { node, legend, provider, kind, fields, words, error, inputs: [], shape: null,
    shapes: [], text: "", valid: false, description: "", timer: null, asked: 0, remove };

  const fillKinds = () => {
    const chosen = providers.find((p) => p.id === provider.value);
    const shapes = chosen ? shapesOf(chosen) : [];
    row.shapes = shapes;
    kind.replaceChildren(...shapes.map((s) => el("option", { value: s.kind }, s.usage)),
      el("option", { value: TYPED }, "Type the rule yourself"));
    fillFields();
  };
  const fillFields = () => {
    const shape = row.shapes.find((s) => s.kind === kind.value) || null;
    row.shape = shape;
    row.inputs = [];
    const describedBy = `${words.id} ${error.id}`;
    const made = [];
    if (shape?.meaning) made.push(el("p", { class: "hint" }, shape.meaning));
    if (shape) {
      (shape.fields || []).forEach((part, index) => {
        const inputId = `${id}-field-${index}`;
        const input = part.choices?.length
          ? el("select", { id: inputId, "aria-describedby": describedBy },
            ...(part.optional ? [el("option", { value: "" }, "(leave out)")] : []),
            ...part.choices.map((choice) => el("option", { value: choice }, choice)))
          : el("input", { id: inputId, spellcheck: "false", autocapitalize: "off",
            "aria-describedby": describedBy });
        made.push(el("div", { class: "field" },
          el("label", { for: inputId }, part.label,
            part.optional ? el("span", { class: "optional" }, " (optional)") : null),
          input));
        row.inputs.push(input);
      });
    } else {
      const input = el("input", { id: `${id}-text`, spellcheck: "false",
        autocapitalize: "off", "aria-describedby": `${id}-text-hint ${describedBy}` });
      made.push(el("div", { class: "field" },
        el("label", { for: input.id }, "The rule"),
        el("p", { id: `${id}-text-hint`, class: "hint" },
          "As after the provider in !invitebot bind, e.g. team:matrix-org/core."),
        input));
      row.inputs.push(input);
    }
    fields.replaceChildren(...made);
    for (const input of row.inputs) {
      input.addEventListener(input.tagName === "SELECT" ? "change" : "input",
        () => scheduleCheck(builder, row));
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
  if (!row.shape) return (row.inputs[0]?.value || "").trim();
  return composeRule(row.shape, row.inputs.map((input) => input.value));
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

function markInvalid(row, invalid) {
  for (const input of row.inputs) {
    if (invalid) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

async function checkRow(builder, row) {
  clearTimeout(row.timer);
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
    markInvalid(row, true);
    builder.changed();
    return;
  }
  if (asked !== row.asked) return;  // the admin typed on: a newer check is coming
  showError(row.error, "");
  markInvalid(row, false);
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
    // Checks still waiting for the admin to stop typing are made now; then the first
    // rule that does not hold (or has empty fields), if any.
    async firstProblem() {
      await Promise.all(this.rows.filter((row) => !row.valid && row.text)
        .map((row) => checkRow(this, row)));
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
