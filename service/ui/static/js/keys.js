// API keys (admin): the list with usage and state, creating one (its secret shown once), revoking.

import { call } from "./api.js";
import { attempt, badge, byId, clearProblem, describeLimits, formatTime, h, instant, onSubmit, showProblem, table } from "./dom.js";

export function setUp() {
  onSubmit("key-create", create);
  byId("key-secret-copy").addEventListener("click", copySecret);
  byId("key-secret-dismiss").addEventListener("click", hideSecret);
}

export function show() {
  return attempt(byId("keys-error"), async () => render((await call("GET", "/admin/keys")).data.items));
}

function render(keys) {
  const scope = (key) => {
    const s = key.scope || {};
    const parts = [s.templates ? `templates: ${s.templates.join(", ")}` : "any template"];
    for (const [name, rule] of Object.entries(s.parameterRules || {})) parts.push(`${name} ~ ${rule}`);
    if (s.serverKeys === false) parts.push("CSR only");
    if (s.enrolledOnly) parts.push("enrolled only");
    return parts.join("; ");
  };
  byId("keys-table").replaceChildren(
    table(
      [
        { title: "Key", cell: (k) => h("code", {}, k.keyId) },
        { title: "Name", cell: (k) => k.name },
        { title: "Role", cell: (k) => k.role },
        { title: "State", cell: (k) => badge(k.state) },
        { title: "Scope", cell: scope },
        { title: "Provisions", cell: describeLimits },
        { title: "Created", cell: (k) => formatTime(k.createdAt) },
        { title: "Last used", cell: (k) => formatTime(k.lastUsedAt) },
        { title: "Expires", cell: (k) => formatTime(k.expiresAt) },
        {
          title: "",
          cell: (k) =>
            k.state === "active"
              ? h("button", { type: "button", className: "danger", onclick: () => revoke(k) }, "Revoke")
              : "",
        },
      ],
      keys,
      "No keys issued yet.",
    ),
  );
}

function readKeyForm(form) {
  const field = (name) => form.elements[name].value.trim();
  const number = (name) => (field(name) ? Number(field(name)) : null);
  const templates = field("templates")
    .split(/[\s,]+/)
    .filter(Boolean);
  const parameterRules = {};
  for (const line of form.elements.rules.value.split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error(`A rule is name=regular expression: "${line.trim()}"`);
    parameterRules[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return {
    name: field("name"),
    role: field("role"),
    templates: templates.length ? templates : null,
    parameterRules,
    serverKeys: form.elements.serverKeys.checked,
    enrolledOnly: form.elements.enrolledOnly.checked,
    expiresAt: instant(field("expiresAt")) || null,
    maxProvisions: number("maxProvisions"),
    ratePerMinute: number("ratePerMinute"),
  };
}

async function create(form) {
  const problem = byId("key-create-error");
  const button = byId("key-create-submit");
  button.disabled = true;
  try {
    const { data } = await call("POST", "/admin/keys", { json: readKeyForm(form) });
    clearProblem(problem);
    form.reset();
    byId("key-create-panel").open = false;
    byId("key-secret-value").textContent = data.apiKey;
    byId("key-secret-copied").textContent = "";
    byId("key-secret").hidden = false;
    await show();
  } catch (error) {
    showProblem(problem, error);
  } finally {
    button.disabled = false;
  }
}

async function copySecret() {
  const secret = byId("key-secret-value").textContent;
  const note = byId("key-secret-copied");
  try {
    await navigator.clipboard.writeText(secret);
    note.textContent = "Copied.";
  } catch {
    // No clipboard permission (plain http off localhost): select it for Ctrl+C instead.
    getSelection().selectAllChildren(byId("key-secret-value"));
    note.textContent = "Selected: press Ctrl+C.";
  }
}

export function hideSecret() {
  byId("key-secret-value").textContent = "";
  byId("key-secret").hidden = true;
}

async function revoke(key) {
  if (!confirm(`Revoke ${key.keyId}${key.name ? ` (${key.name})` : ""}? Devices using it stop working.`)) return;
  try {
    await call("DELETE", `/admin/keys/${encodeURIComponent(key.keyId)}`);
    await show();
  } catch (error) {
    showProblem(byId("keys-error"), error);
  }
}
