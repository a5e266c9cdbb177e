// Devices (admin): the things in AWS IoT and one device's view - its certificates and their status
// from AWS, its enrollment, its provisions and lifecycle actions - with suspend, reactivate,
// revoke, rotate and decommission. Every destructive action asks first (confirm.js).

import { call, query } from "./api.js";
import { confirmAction } from "./confirm.js";
import { attempt, badge, byId, clearProblem, download, formatTime, h, onSubmit, Pages, showProblem, table } from "./dom.js";
import { controlPlaneUsable, statusBadge } from "./lifecycle.js";

const PAGE = 50;
let pages = null;
let device = null;

export function setUp() {
  onSubmit("device-find", (form) => open(form.elements.thingName.value.trim()));
  pages = new Pages("devices", loadList);
  byId("device-close").addEventListener("click", closeDevice);
  byId("device-decommission").addEventListener("click", decommission);
  onSubmit("device-rotate", rotate);
}

export async function show() {
  await controlPlaneUsable(byId("devices-control-plane"));
  if (device) return open(device.thingName);
  return loadList(null);
}

function loadList(from) {
  const ticket = pages.ask();
  return attempt(byId("devices-error"), async () => {
    const { data } = await call("GET", `/admin/devices${query({ next: from, limit: PAGE })}`);
    if (!pages.add(ticket, from, data)) return;
    byId("devices-table").replaceChildren(
      table(
        [
          {
            title: "Thing",
            cell: (t) => h("button", { type: "button", className: "quiet", onclick: () => open(t.thingName) }, t.thingName),
          },
          { title: "Type", cell: (t) => t.thingTypeName || "" },
          { title: "Attributes", cell: (t) => pairs(t.attributes) },
        ],
        pages.rows,
        "No things in AWS IoT.",
      ),
    );
  });
}

function open(thingName) {
  return attempt(byId("devices-error"), async () => {
    device = (await call("GET", `/admin/devices/${encodeURIComponent(thingName)}`)).data;
    render();
  });
}

function closeDevice() {
  device = null;
  byId("device-panel").hidden = true;
  byId("devices-list").hidden = false;
  byId("device-status").textContent = "";
  clearProblem(byId("device-action-error"));
  byId("device-rotated").hidden = true;
  loadList(null);
}

function render() {
  byId("devices-list").hidden = true;
  byId("device-panel").hidden = false;
  byId("device-name").textContent = device.thingName;
  const entry = device.enrollment;
  const facts = [
    ["Type", device.thingTypeName || "-"],
    ["Attributes", pairs(device.attributes) || "-"],
    ["Version", device.version ?? "-"],
    [
      "Enrollment",
      entry
        ? `${entry.template} ${entry.parameter}=${entry.value} · ${entry.reprovision} · ${entry.enabled ? "enabled" : "disabled"} · provisions ${entry.provisions}`
        : "none",
    ],
  ];
  byId("device-facts").replaceChildren(...facts.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]));
  byId("device-certificates").replaceChildren(
    table(
      [
        { title: "Certificate", cell: (c) => h("code", { title: c.certificateId }, c.certificateId) },
        { title: "Status", cell: (c) => statusBadge(c.status) },
        { title: "Created", cell: (c) => formatTime(c.createdAt) },
        { title: "Not after", cell: (c) => formatTime(c.notAfter) },
        {
          title: "Retirement",
          cell: (c) => (c.retirement ? `${c.retirement.state} · ${formatTime(c.retirement.dueAt)}` : ""),
        },
        { title: "", cell: certificateActions },
      ],
      device.certificates,
      "No certificate attached.",
    ),
  );
  byId("device-registrations").replaceChildren(
    table(
      [
        { title: "When", cell: (r) => formatTime(r.at) },
        { title: "Outcome", cell: (r) => badge(r.outcome) },
        { title: "Status", cell: (r) => String(r.httpStatus) },
        { title: "Key", cell: (r) => (r.keyId ? h("code", {}, r.keyId) : "") },
        { title: "Certificate", cell: (r) => (r.certificateId ? h("code", {}, r.certificateId.slice(0, 16)) : "") },
        { title: "Request", cell: (r) => r.requestId },
      ],
      device.registrations,
      "No provision of this thing recorded.",
    ),
  );
  byId("device-events").replaceChildren(
    table(
      [
        { title: "When", cell: (e) => formatTime(e.at) },
        { title: "Action", cell: (e) => e.action },
        { title: "Outcome", cell: (e) => badge(e.outcome) },
        { title: "By", cell: (e) => e.actor || "" },
        { title: "Certificate", cell: (e) => (e.certificateId ? h("code", {}, e.certificateId.slice(0, 16)) : "") },
      ],
      device.events,
      "No lifecycle action recorded.",
    ),
  );
}

function certificateActions(certificate) {
  const buttons = [];
  if (certificate.status === "ACTIVE") {
    buttons.push(h("button", { type: "button", className: "danger", onclick: () => changeStatus(certificate, "suspend") }, "Suspend…"));
  }
  if (certificate.status === "INACTIVE") {
    buttons.push(h("button", { type: "button", className: "quiet", onclick: () => changeStatus(certificate, "reactivate") }, "Reactivate"));
  }
  if (certificate.status !== "REVOKED") {
    buttons.push(h("button", { type: "button", className: "danger", onclick: () => changeStatus(certificate, "revoke") }, "Revoke…"));
  }
  return h("div", { className: "row-actions" }, buttons);
}

const STATUS_ACTIONS = {
  suspend: {
    title: "Suspend this certificate?",
    text: "AWS IoT disconnects every device using it within seconds and refuses it until it is reactivated.",
    button: "Suspend",
    done: "suspended (INACTIVE): devices using it are disconnected",
  },
  revoke: {
    title: "Revoke this certificate for good?",
    text: "AWS IoT disconnects every device using it within seconds; a revoked certificate can never be used again.",
    button: "Revoke",
    done: "revoked: devices using it are disconnected and cannot reconnect",
  },
  reactivate: { done: "active again" },
};

async function changeStatus(certificate, action) {
  const spec = STATUS_ACTIONS[action];
  const word = certificate.certificateId.slice(0, 8);
  if (spec.title) {
    const sure = await confirmAction({
      title: spec.title,
      text: `${certificate.certificateId} on ${device.thingName}. ${spec.text}`,
      word,
      button: spec.button,
    });
    if (!sure) return;
  }
  await act(`/admin/certificates/${certificate.certificateId}/${action}`, `Certificate ${word}… ${spec.done}.`);
}

async function decommission() {
  const sure = await confirmAction({
    title: `Decommission ${device.thingName}?`,
    text:
      "Its certificates are detached, deactivated and deleted, and the thing is deleted in AWS IoT: the device " +
      "can no longer connect. Its enrollment may provision again.",
    word: device.thingName,
    button: "Decommission",
  });
  if (!sure) return;
  const name = device.thingName;
  const result = await act(`/admin/devices/${encodeURIComponent(name)}/decommission`, null, undefined, false);
  if (result) {
    device = null;
    byId("device-panel").hidden = true;
    byId("devices-list").hidden = false;
    const reopened = result.enrollmentsReopened ? " Its enrollment may provision again." : "";
    await loadList(null);
    byId("devices-table").prepend(h("p", { className: "status", role: "status", id: "devices-done" }, `Decommissioned ${name}.${reopened}`));
  }
}

async function rotate(form) {
  const grace = form.elements.graceSeconds.value.trim();
  const body = { csr: form.elements.csr.value.trim() };
  if (grace !== "") body.graceSeconds = Number(grace);
  if (grace === "0") {
    const sure = await confirmAction({
      title: "Retire the old certificate now?",
      text: "With no grace period the old certificate is deleted at once: a device still using it is disconnected.",
      word: device.thingName,
      button: "Rotate",
    });
    if (!sure) return;
  }
  byId("device-rotate-submit").disabled = true;
  try {
    // The view is read again after the form is emptied and the answer shown: a CSR pasted
    // meanwhile is not wiped when the refresh ends.
    const { thingName } = device;
    const data = await act(`/admin/devices/${encodeURIComponent(thingName)}/rotate`, null, body, false);
    if (!data) return;
    form.reset();
    byId("device-rotated-id").textContent = data.certificateId;
    byId("device-rotated-retiring").textContent = data.retiring
      .map((r) => `${r.certificateId.slice(0, 12)}… ${data.retiredNow.includes(r.certificateId) ? "retired now" : `retired at ${formatTime(r.retireAt)}`}`)
      .join("; ");
    download(byId("device-rotated-download"), new Blob([data.certificatePem], { type: "application/x-pem-file" }), "certificate.pem");
    byId("device-rotated").hidden = false;
    byId("device-status").textContent = `Rotated: new certificate ${data.certificateId.slice(0, 8)}….`;
    await open(thingName);
  } finally {
    byId("device-rotate-submit").disabled = false;
  }
}

// One lifecycle call; the device view is read again after it. Returns the answer, or null.
async function act(path, doneText, json, reload = true) {
  const problem = byId("device-action-error");
  const status = byId("device-status");
  status.textContent = "Working…";
  try {
    const { data } = await call("POST", path, json === undefined ? {} : { json });
    clearProblem(problem);
    status.textContent = doneText || "";
    if (reload && device) await open(device.thingName);
    return data;
  } catch (error) {
    status.textContent = "";
    showProblem(problem, error);
    return null;
  }
}

function pairs(values) {
  return Object.entries(values || {})
    .map(([name, value]) => `${name}=${value}`)
    .join(", ");
}
