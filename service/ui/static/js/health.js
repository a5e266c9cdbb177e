// Health (admin): GET /readyz with the admin key - the pool's connections and whatever else this
// worker reports (the store, ...). Shown generically: scalars as facts, lists of objects as tables.

import { call } from "./api.js";
import { attempt, badge, byId, h, table } from "./dom.js";

export function setUp() {
  byId("health-refresh").addEventListener("click", show);
}

export function show() {
  return attempt(byId("health-error"), async () => {
    // 503 is an answer here: not ready, and the body says why.
    const { data } = await call("GET", "/readyz", { okStatuses: [503] });
    byId("health-detail").replaceChildren(...render(data));
  });
}

function render(detail) {
  const facts = [];
  const sections = [];
  for (const [name, value] of Object.entries(detail)) {
    if (name === "ready") continue;
    if (Array.isArray(value) && value.every((item) => item && typeof item === "object")) {
      sections.push(h("h3", {}, name), listTable(value));
    } else if (value && typeof value === "object") {
      sections.push(h("h3", {}, name), h("dl", {}, factsOf(value)));
    } else {
      facts.push(h("dt", {}, name), h("dd", {}, String(value)));
    }
  }
  return [
    h("p", {}, "This worker is ", badge(detail.ready ? "ready" : "not ready")),
    facts.length ? h("dl", {}, facts) : null,
    ...sections,
  ].filter(Boolean);
}

function factsOf(object) {
  return Object.entries(object).flatMap(([name, value]) => [
    h("dt", {}, name),
    h("dd", {}, typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)),
  ]);
}

function listTable(items) {
  const columns = [...new Set(items.flatMap((item) => Object.keys(item)))];
  return table(
    columns.map((column) => ({
      title: column,
      cell: (item) => {
        const value = item[column];
        if (column === "state" && typeof value === "string") return badge(value);
        return value === null || value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
      },
    })),
    items,
    "None.",
  );
}
