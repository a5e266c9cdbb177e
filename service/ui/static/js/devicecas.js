// Device CAs (admin): manufacturer CAs registered for a template, whose devices provision over
// mutual TLS with their own certificate; per CA its parameters, policy, state, limits, block list
// and CRL. docs/attestation.md.

import { call } from "./api.js";
import { confirmAction } from "./confirm.js";
import { attempt, badge, byId, clearProblem, describeLimits, formatTime, h, onSubmit, showProblem, table } from "./dom.js";

const SOURCES = ["subject.serialNumber", "subject.CN", "san.uri", "san.dns"];
let current = null; // the CA open in the detail panel

export function setUp() {
  onSubmit("deviceca-register", register);
  byId("deviceca-pem-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) byId("deviceca-register").elements.certificates.value = await file.text();
  });
  byId("deviceca-close").addEventListener("click", () => close());
  onSubmit("deviceca-change", change);
  onSubmit("deviceca-block", block);
  onSubmit("deviceca-crl-load", loadCrl);
  byId("deviceca-crl-drop").addEventListener("click", () => dropCrl());
  byId("deviceca-delete").addEventListener("click", () => remove());
}

export function show() {
  return attempt(byId("devicecas-error"), async () => render((await call("GET", "/admin/device-cas")).data.items));
}

function render(cas) {
  byId("devicecas-table").replaceChildren(
    table(
      [
        { title: "CA", cell: (ca) => h("code", {}, ca.caId) },
        { title: "Name", cell: (ca) => ca.name },
        { title: "Template", cell: (ca) => ca.template },
        { title: "Subject", cell: (ca) => ca.subject },
        { title: "State", cell: (ca) => badge(ca.enabled ? "enabled" : "disabled") },
        { title: "Reprovision", cell: (ca) => ca.reprovision },
        { title: "Provisions", cell: describeLimits },
        { title: "", cell: (ca) => h("button", { type: "button", className: "quiet", onclick: () => open(ca.caId) }, "Open") },
      ],
      cas,
      "No device CAs registered yet.",
    ),
  );
}

// "Name from SOURCE [~ REGEX]" or "Name = value", one per line, as the API's parameter sources.
export function parseParameters(text) {
  const parameters = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const taken = line.match(/^(\S+)\s+from\s+(\S+)(?:\s+~\s+(.+))?$/);
    const fixed = line.match(/^([^=\s]+)\s*=\s*(.*)$/);
    if (taken) {
      if (!SOURCES.includes(taken[2])) throw new Error(`"${taken[2]}" is not a source (${SOURCES.join(", ")})`);
      parameters[taken[1]] = taken[3] ? { from: taken[2], pattern: taken[3] } : { from: taken[2] };
    } else if (fixed) {
      parameters[fixed[1]] = { value: fixed[2] };
    } else {
      throw new Error(`A parameter is "Name from SOURCE", "Name from SOURCE ~ REGEX" or "Name = value": "${line}"`);
    }
  }
  return parameters;
}

function parametersText(parameters) {
  return Object.entries(parameters || {})
    .map(([name, spec]) =>
      "from" in spec ? `${name} from ${spec.from}${spec.pattern ? ` ~ ${spec.pattern}` : ""}` : `${name} = ${spec.value}`,
    )
    .join("\n");
}

const numberOrNull = (form, name) => (form.elements[name].value.trim() ? Number(form.elements[name].value) : null);

async function register(form) {
  const problem = byId("deviceca-register-error");
  const button = byId("deviceca-register-submit");
  button.disabled = true;
  try {
    const field = (name) => form.elements[name].value.trim();
    const body = {
      template: field("template"),
      name: field("name"),
      certificates: form.elements.certificates.value,
      parameters: parseParameters(form.elements.parameters.value),
      reprovision: field("reprovision"),
      enabled: form.elements.enabled.checked,
      maxChainDepth: Number(field("maxChainDepth") || 2),
      maxProvisions: numberOrNull(form, "maxProvisions"),
      ratePerMinute: numberOrNull(form, "ratePerMinute"),
    };
    const { data } = await call("POST", "/admin/device-cas", { json: body });
    clearProblem(problem);
    form.reset();
    byId("deviceca-register-panel").open = false;
    // Shown before the list is read again: a CA the operator opens meanwhile is not replaced
    // by this one when the refresh ends.
    fill(data);
    await show();
  } catch (error) {
    showProblem(problem, error);
  } finally {
    button.disabled = false;
  }
}

function open(caId) {
  return attempt(byId("devicecas-error"), async () => {
    fill((await call("GET", `/admin/device-cas/${encodeURIComponent(caId)}`)).data);
  });
}

function close() {
  current = null;
  byId("deviceca").hidden = true;
}

function fill(ca) {
  current = ca;
  byId("deviceca-title").textContent = `${ca.caId}${ca.name ? ` · ${ca.name}` : ""} · template ${ca.template}`;
  byId("deviceca-facts").replaceChildren(
    h(
      "dl",
      { className: "facts" },
      [
        ["Subject", ca.subject],
        ["SHA-256", ca.fingerprintSha256],
        ["State", ca.enabled ? "enabled" : "disabled"],
        ["Provisions", describeLimits(ca)],
        ["Revision", String(ca.revision)],
        ["Updated", formatTime(ca.updatedAt)],
      ].flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
    ),
  );
  const form = byId("deviceca-change").elements;
  form.name.value = ca.name;
  form.reprovision.value = ca.reprovision;
  form.maxChainDepth.value = ca.maxChainDepth;
  form.parameters.value = parametersText(ca.parameters);
  form.maxProvisions.value = ca.maxProvisions ?? "";
  form.ratePerMinute.value = ca.ratePerMinute ?? "";
  form.enabled.checked = ca.enabled;
  byId("deviceca-status").textContent = "";
  byId("deviceca-blocks").replaceChildren(
    table(
      [
        { title: "By", cell: (b) => b.kind },
        { title: "Value", cell: (b) => h("code", {}, b.value) },
        { title: "Reason", cell: (b) => b.reason },
        { title: "Since", cell: (b) => formatTime(b.createdAt) },
        { title: "", cell: (b) => h("button", { type: "button", className: "quiet", onclick: () => unblock(b) }, "Unblock") },
      ],
      ca.blocks || [],
      "No device is blocked.",
    ),
  );
  byId("deviceca-crl").replaceChildren(
    ca.crl
      ? h(
          "p",
          {},
          `${ca.crl.issuer}: ${ca.crl.revoked} revoked, issued ${formatTime(ca.crl.thisUpdate)}` +
            (ca.crl.nextUpdate ? `, next update ${formatTime(ca.crl.nextUpdate)}` : "") +
            `, loaded ${formatTime(ca.crl.loadedAt)}`,
        )
      : h("p", { className: "empty" }, "No CRL loaded."),
  );
  byId("deviceca-crl-drop").hidden = !ca.crl;
  clearProblem(byId("deviceca-error"));
  byId("deviceca").hidden = false;
}

async function act(work) {
  const problem = byId("deviceca-error");
  try {
    await work();
    clearProblem(problem);
    const { data } = await call("GET", `/admin/device-cas/${encodeURIComponent(current.caId)}`);
    fill(data);
    await show();
    return true;
  } catch (error) {
    showProblem(problem, error);
    return false;
  }
}

async function change(form) {
  const button = byId("deviceca-change-submit");
  button.disabled = true;
  try {
    const done = await act(() =>
      call("PATCH", `/admin/device-cas/${encodeURIComponent(current.caId)}`, {
        json: {
          name: form.elements.name.value.trim(),
          reprovision: form.elements.reprovision.value,
          maxChainDepth: Number(form.elements.maxChainDepth.value),
          parameters: parseParameters(form.elements.parameters.value),
          maxProvisions: numberOrNull(form, "maxProvisions"),
          ratePerMinute: numberOrNull(form, "ratePerMinute"),
          enabled: form.elements.enabled.checked,
        },
      }),
    );
    if (done) byId("deviceca-status").textContent = "Saved: every worker applies it within 2 s.";
  } finally {
    button.disabled = false;
  }
}

async function block(form) {
  const body = {
    kind: form.elements.kind.value,
    value: form.elements.value.value.trim(),
    reason: form.elements.reason.value.trim(),
  };
  // Emptied as soon as the service took the block, before the view is read again: what the
  // operator types meanwhile (the next block) is not wiped when the refresh ends.
  await act(async () => {
    await call("POST", `/admin/device-cas/${encodeURIComponent(current.caId)}/blocks`, { json: body });
    form.reset();
  });
}

function unblock(entry) {
  const search = new URLSearchParams({ kind: entry.kind, value: entry.value });
  return act(() => call("DELETE", `/admin/device-cas/${encodeURIComponent(current.caId)}/blocks?${search}`));
}

// The CRL as PEM text, or a DER file in base64 (JSON carries no bytes).
async function crlText(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(0, 64));
  if (text.trimStart().startsWith("-----BEGIN")) return await file.text();
  let binary = "";
  for (let at = 0; at < bytes.length; at += 0x8000) binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  return btoa(binary);
}

async function loadCrl() {
  const file = byId("deviceca-crl-file").files[0];
  if (!file) return;
  const button = byId("deviceca-crl-submit");
  button.disabled = true;
  try {
    const crl = await crlText(file);
    await act(async () => {
      await call("PUT", `/admin/device-cas/${encodeURIComponent(current.caId)}/crl`, { json: { crl } });
      byId("deviceca-crl-load").reset();
    });
  } finally {
    button.disabled = false;
  }
}

function dropCrl() {
  return act(() => call("DELETE", `/admin/device-cas/${encodeURIComponent(current.caId)}/crl`));
}

async function remove() {
  const ca = current;
  const confirmed = await confirmAction({
    title: `Delete device CA ${ca.caId}?`,
    text: `Its devices (${ca.subject}, template ${ca.template}) are refused as unknown from then on; its block list and CRL go with it.`,
    word: ca.caId,
    button: "Delete",
  });
  if (!confirmed) return;
  try {
    await call("DELETE", `/admin/device-cas/${encodeURIComponent(ca.caId)}`);
    close();
    await show();
  } catch (error) {
    showProblem(byId("deviceca-error"), error);
  }
}
