// Provision one device: the template and parameters the key allows, a key pair and CSR made here,
// POST /provision with an Idempotency-Key, then a bundle to download.

import { ApiError, call } from "./api.js";
import { makeDeviceKey } from "./device_key.js";
import { byId, clearProblem, download, h, onSubmit, showProblem } from "./dom.js";
import { zip } from "./zip.js";

let scope = null;
// The attempt whose answer never came (network error, 5xx) or that was told to wait (409 still
// running, 429): sent again unchanged, with the same Idempotency-Key and CSR, the service replays
// its first answer instead of provisioning twice. Only a final refusal lets it go.
let unsettled = null;

export function setUp() {
  byId("add-parameter").addEventListener("click", () => addParameter("", ""));
  onSubmit("provision-form", provision);
}

export function show(caller) {
  if (scope === caller.scope) return;
  scope = caller.scope;
  unsettled = null;
  const slot = byId("template-slot");
  if (scope.templates === null) {
    slot.replaceChildren(h("input", { id: "template", required: true, placeholder: "any template, e.g. demo" }));
  } else if (scope.templates.length) {
    slot.replaceChildren(h("select", { id: "template" }, scope.templates.map((name) => h("option", {}, name))));
  } else {
    slot.replaceChildren(h("span", { className: "hint" }, "This key may not use any template."));
  }
  byId("parameters").replaceChildren();
  const rules = Object.entries(scope.parameterRules || {});
  for (const [name, rule] of rules) addParameter(name, rule);
  if (!rules.length) addParameter("", "");
}

function addParameter(name, rule) {
  const row = h(
    "div",
    { className: "param-row" },
    h("input", { className: "param-name", "aria-label": "Parameter name", value: name, placeholder: "SerialNumber" }),
    h("input", { className: "param-value", "aria-label": `Value of ${name || "the parameter"}`, placeholder: "value" }),
    h("button", { type: "button", className: "quiet", onclick: () => row.remove() }, "Remove"),
    rule ? h("span", { className: "hint rule" }, `must match ${rule}`) : null,
  );
  byId("parameters").append(row);
}

function readForm() {
  const template = byId("template");
  const parameters = {};
  for (const row of byId("parameters").querySelectorAll(".param-row")) {
    const name = row.querySelector(".param-name").value.trim();
    if (name) parameters[name] = row.querySelector(".param-value").value;
  }
  return { templateName: template ? template.value.trim() : "", parameters };
}

async function provision() {
  const button = byId("provision-submit");
  const status = byId("provision-status");
  const problem = byId("provision-error");
  clearProblem(problem);
  byId("provision-result").hidden = true;
  button.disabled = true;
  try {
    const form = readForm();
    const fingerprint = JSON.stringify(form);
    if (!unsettled || unsettled.fingerprint !== fingerprint) {
      status.textContent = "Making a key pair and CSR in this browser…";
      const commonName = Object.values(form.parameters)[0] || form.templateName || "device";
      const device = await makeDeviceKey(commonName.slice(0, 64));
      unsettled = { fingerprint, idempotencyKey: crypto.randomUUID(), ...device };
    }
    status.textContent = "Provisioning…";
    const attempt = unsettled;
    const answer = await call("POST", "/provision", {
      json: { ...form, csr: attempt.csrPem },
      headers: { "Idempotency-Key": attempt.idempotencyKey },
    });
    unsettled = null;
    status.textContent = "";
    await showResult(form, answer, attempt.privateKeyPem);
  } catch (error) {
    status.textContent = "";
    // A refusal (4xx) is final for this key pair, except "still running" and "too many requests":
    // the first request may yet finish, so a new key pair would orphan its identity and mint a
    // second. Anything else (network error, 5xx) may also be retried as the same request.
    const waiting = error instanceof ApiError && mustWait(error);
    if (error instanceof ApiError && error.status >= 400 && error.status < 500 && !waiting) unsettled = null;
    showProblem(problem, error);
    if (waiting) {
      status.textContent =
        error.status === 429
          ? "Rate limited: press Provision again (after the wait) to retry the same request."
          : "Still being provisioned: press Provision again to retry the same request.";
    }
  } finally {
    button.disabled = false;
  }
}

// 409 while the first request with this Idempotency-Key (or for this device) still runs, or 429.
function mustWait(error) {
  if (error.status === 429) return true;
  if (error.status !== 409) return false;
  const problem = error.problem || {};
  return String(problem.type || "").endsWith("/idempotency-in-progress") || problem.inProgress === true;
}

async function showResult(form, answer, privateKeyPem) {
  const result = answer.data;
  const ca = await caCertificate();
  const config = {
    thingName: result.thingName,
    certificateId: result.certificateId,
    templateName: form.templateName,
    parameters: form.parameters,
    deviceConfiguration: result.deviceConfiguration || {},
    files: { certificate: "certificate.pem", privateKey: "private.key", ca: ca.pem ? "ca.pem" : null },
    provisionedAt: new Date().toISOString(),
    requestId: answer.headers.get("X-Request-Id"),
  };
  const files = [
    { name: "certificate.pem", data: result.certificatePem },
    { name: "private.key", data: privateKeyPem, mode: 0o600 },
    ca.pem ? { name: "ca.pem", data: ca.pem } : null,
    { name: "config.json", data: `${JSON.stringify(config, null, 2)}\n` },
  ].filter(Boolean);
  byId("result-thing").textContent = result.thingName;
  const facts = [
    ["Thing", result.thingName],
    ["Certificate", h("code", {}, result.certificateId)],
    ["Device configuration", h("code", {}, JSON.stringify(config.deviceConfiguration))],
  ];
  if (answer.headers.get("Idempotent-Replayed")) facts.push(["Note", "the service replayed its first answer"]);
  byId("result-detail").replaceChildren(...facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  const link = byId("bundle-download");
  download(link, zip(files), `${result.thingName}.zip`);
  link.textContent = `Download ${result.thingName}.zip`;
  byId("bundle-note").textContent =
    `certificate.pem, private.key, ${ca.pem ? "ca.pem, " : ""}config.json. The private key exists only in ` +
    `this tab: download the bundle now, it cannot be fetched again.${ca.pem ? "" : ` ${ca.note}`}`;
  byId("provision-result").hidden = false;
}

async function caCertificate() {
  try {
    const answer = await call("GET", "/ui/ca.pem", { key: null });
    return { pem: answer.data };
  } catch (error) {
    return { pem: null, note: `No ca.pem: ${error.message}` };
  }
}

export function forget() {
  scope = null;
  unsettled = null;
  const link = byId("bundle-download");
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.removeAttribute("href");
  byId("provision-result").hidden = true;
  byId("result-detail").replaceChildren();
  clearProblem(byId("provision-error"));
}
