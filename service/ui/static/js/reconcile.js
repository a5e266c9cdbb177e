// Reconcile (admin): the audit trail against AWS IoT, the differences both ways, as a table and as
// CSV (made here from the JSON answer, its cells neutralised as the service's CSV is).

import { call, query } from "./api.js";
import { badge, byId, clearProblem, download, formatTime, h, instant, onSubmit, showProblem, table } from "./dom.js";
import { csv, statusBadge } from "./lifecycle.js";

const FIELDS = ["kind", "certificateId", "thingName", "awsStatus", "expectedStatus", "at", "detail"];

export function setUp() {
  onSubmit("reconcile-form", compare);
}

export function show() {}

async function compare() {
  const problem = byId("reconcile-error");
  const status = byId("reconcile-status");
  const button = byId("reconcile-submit");
  button.disabled = true;
  status.textContent = "Comparing…";
  try {
    const since = instant(byId("reconcile-form").elements.since.value);
    const { data } = await call("GET", `/admin/reconcile${query({ since })}`);
    clearProblem(problem);
    status.textContent =
      `Since ${data.since ? formatTime(data.since) : "the beginning"}: ${data.issuedHere} issued here, ` +
      `${data.certificatesInAws} in AWS IoT, ${data.differences.length} difference(s).`;
    byId("reconcile-table").replaceChildren(
      table(
        [
          { title: "Kind", cell: (d) => badge(d.kind) },
          { title: "Certificate", cell: (d) => (d.certificateId ? h("code", { title: d.certificateId }, d.certificateId.slice(0, 16)) : "") },
          { title: "Thing", cell: (d) => d.thingName || "" },
          { title: "AWS", cell: (d) => (d.awsStatus ? statusBadge(d.awsStatus) : "") },
          { title: "Expected", cell: (d) => d.expectedStatus || "" },
          { title: "When", cell: (d) => formatTime(d.at) },
          { title: "Detail", cell: (d) => d.detail },
        ],
        data.differences,
        "No differences: the audit trail and AWS IoT agree.",
      ),
    );
    const link = byId("reconcile-csv");
    download(link, new Blob([csv(FIELDS, data.differences)], { type: "text/csv" }), "reconcile.csv");
    link.hidden = false;
  } catch (error) {
    status.textContent = "";
    showProblem(problem, error);
  } finally {
    button.disabled = false;
  }
}
