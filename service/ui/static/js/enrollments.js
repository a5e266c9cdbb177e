// Enrollments (admin): the list per template, page by page, and a CSV import whose bad lines are
// shown as the service names them ("line 3: ...").

import { call, query } from "./api.js";
import { attempt, badge, byId, clearProblem, formatTime, h, onSubmit, Pages, showProblem, table } from "./dom.js";

const PAGE = 100;
let pages = null;

export function setUp() {
  onSubmit("enrollment-filter", show);
  pages = new Pages("enrollments", load);
  onSubmit("enrollment-import", upload);
}

export function show() {
  return load(0);
}

function load(after) {
  const template = byId("enrollment-filter").elements.template.value.trim();
  const ticket = pages.ask();
  return attempt(byId("enrollments-error"), async () => {
    const { data } = await call("GET", `/admin/enrollments${query({ template, after, limit: PAGE })}`);
    if (pages.add(ticket, after, data)) render();
  });
}

function render() {
  byId("enrollments-table").replaceChildren(
    table(
      [
        { title: "Template", cell: (e) => e.template },
        { title: "Parameter", cell: (e) => e.parameter },
        { title: "Value", cell: (e) => h("code", {}, e.value) },
        { title: "Enabled", cell: (e) => badge(e.enabled ? "enabled" : "disabled") },
        { title: "Reprovision", cell: (e) => e.reprovision },
        { title: "Provisions", cell: (e) => String(e.provisions) },
        { title: "Last thing", cell: (e) => e.lastThingName || "" },
        { title: "Last provisioned", cell: (e) => formatTime(e.lastProvisionedAt) },
      ],
      pages.rows,
      "No enrollments.",
    ),
  );
}

async function upload(form) {
  const problem = byId("import-error");
  const status = byId("import-status");
  const file = byId("enrollment-file").files[0];
  const template = form.elements.template.value.trim();
  const parameter = form.elements.parameter.value.trim();
  clearProblem(problem);
  status.textContent = "Uploading…";
  try {
    const { data } = await call("POST", `/admin/enrollments/import${query({ template, parameter })}`, {
      body: await file.text(),
      contentType: "text/csv",
    });
    status.textContent = `Imported: ${data.added} added, ${data.updated} updated.`;
    byId("enrollment-filter").elements.template.value = template;
    await show();
  } catch (error) {
    status.textContent = "Nothing was imported.";
    showProblem(problem, error);
  }
}
