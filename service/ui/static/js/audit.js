// The audit trail (admin): every provisioning attempt, newest first, filtered, paged with `next`.

import { call, query } from "./api.js";
import { attempt, badge, byId, formatTime, h, instant, onSubmit, table } from "./dom.js";

const PAGE = 50;
let before = null;

export function setUp() {
  onSubmit("audit-filter", show);
  byId("audit-newest").addEventListener("click", () => show());
  byId("audit-older").addEventListener("click", () => load(before));
}

export function show() {
  return load(null);
}

function filters() {
  const form = byId("audit-filter").elements;
  const value = (name) => form[name].value.trim();
  return {
    since: instant(value("since")),
    until: instant(value("until")),
    keyId: value("keyId"),
    template: value("template"),
    thingName: value("thingName"),
    outcome: value("outcome"),
  };
}

function load(from) {
  return attempt(byId("audit-error"), async () => {
    const { data } = await call("GET", `/admin/registrations${query({ ...filters(), before: from, limit: PAGE })}`);
    render(data.items);
    before = data.next;
    byId("audit-older").hidden = data.next === null;
    byId("audit-newest").hidden = from === null;
  });
}

function render(items) {
  byId("audit-table").replaceChildren(
    table(
      [
        { title: "When", cell: (r) => formatTime(r.at) },
        { title: "Outcome", cell: (r) => badge(r.outcome) },
        { title: "Status", cell: (r) => String(r.httpStatus) },
        { title: "Caller", cell: caller },
        { title: "Template", cell: (r) => r.template || "" },
        { title: "Parameters", cell: (r) => parameters(r.parameters) },
        { title: "Thing", cell: (r) => r.thingName || "" },
        { title: "Problem", cell: (r) => [r.problem, r.step, r.awsErrorCode].filter(Boolean).join(" · ") },
        { title: "Flow", cell: (r) => r.flow || "" },
        { title: "ms", cell: (r) => String(Math.round(r.durationMs)) },
      ],
      items,
      "No records match.",
    ),
  );
}

function parameters(values) {
  if (!values) return "";
  return Object.entries(values)
    .map(([name, value]) => `${name}=${value}`)
    .join(", ");
}

// An API key, or a device: its CA (none when its certificate was refused) and certificate.
function caller(r) {
  if (r.keyId) return h("code", {}, r.keyId);
  if (!r.deviceFingerprint) return "";
  const title = `${r.deviceIssuer} · serial ${r.deviceSerial} · SHA-256 ${r.deviceFingerprint}`;
  return h("span", { title }, `device ${r.deviceCaId || "(refused)"} · ${r.deviceFingerprint.slice(0, 12)}…`);
}
