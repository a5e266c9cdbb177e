// Orphans (admin): the certificates the service got from AWS IoT and never handed out, and the ones
// a rotation or decommission retires, with how each ended; "Sweep now" retires every due one.

import { call, query } from "./api.js";
import { confirmAction } from "./confirm.js";
import { attempt, badge, byId, clearProblem, formatTime, h, onSubmit, Pages, showProblem, table } from "./dom.js";
import { controlPlaneUsable } from "./lifecycle.js";

const PAGE = 100;
let pages = null;

export function setUp() {
  onSubmit("orphans-filter", show);
  pages = new Pages("orphans", load);
  byId("orphans-sweep").addEventListener("click", sweep);
}

export async function show() {
  await controlPlaneUsable(byId("orphans-control-plane"));
  return load("");
}

function load(after) {
  const form = byId("orphans-filter").elements;
  const ticket = pages.ask();
  return attempt(byId("orphans-error"), async () => {
    const { data } = await call(
      "GET",
      `/admin/orphans${query({ state: form.state.value, kind: form.kind.value, after, limit: PAGE })}`,
    );
    if (!pages.add(ticket, after, data)) return;
    byId("orphans-counts").textContent = data.counts.length
      ? data.counts.map((c) => `${c.kind} ${c.state}: ${c.count}`).join(" · ")
      : "Nothing recorded.";
    render();
  });
}

function render() {
  byId("orphans-table").replaceChildren(
    table(
      [
        { title: "Certificate", cell: (r) => h("code", { title: r.certificateId }, r.certificateId.slice(0, 16)) },
        { title: "Kind", cell: (r) => r.kind },
        { title: "Why", cell: (r) => r.reason },
        { title: "State", cell: (r) => badge(r.state) },
        { title: "Thing", cell: (r) => r.thingName || "" },
        { title: "Recorded", cell: (r) => formatTime(r.recordedAt) },
        { title: "Due / done", cell: (r) => formatTime(r.state === "pending" ? r.dueAt : r.doneAt) },
        { title: "Tries", cell: (r) => String(r.attempts) },
        { title: "Last error", cell: (r) => r.lastError || "" },
        { title: "Request", cell: (r) => r.requestId || "" },
      ],
      pages.rows,
      "No certificates recorded.",
    ),
  );
}

async function sweep() {
  const sure = await confirmAction({
    title: "Sweep now?",
    text: "Every due certificate on this list is detached from its things, deactivated and deleted in AWS IoT.",
    button: "Sweep",
  });
  if (!sure) return;
  const status = byId("orphans-status");
  status.textContent = "Sweeping…";
  try {
    const { data } = await call("POST", "/admin/orphans/sweep");
    clearProblem(byId("orphans-error"));
    status.textContent =
      `Retired ${data.retired.length}, gone already ${data.gone.length}, kept ${data.kept.length}, ` +
      `failed ${data.failed.length}.`;
    await load("");
  } catch (error) {
    status.textContent = "";
    showProblem(byId("orphans-error"), error);
  }
}
