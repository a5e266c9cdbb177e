// Small DOM helpers. Text always goes in as text (never innerHTML): values come from the service
// and from operators, and this page holds keys.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "className") element.className = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined));
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

// An <input type="datetime-local"> value (local time) as an ISO 8601 instant, or "" when empty.
export function instant(localValue) {
  return localValue ? new Date(localValue).toISOString() : "";
}

export function badge(text) {
  return h("span", { className: `badge ${String(text).replace(/\s+/g, "-")}` }, String(text));
}

// columns: [{ title, cell: (row) => Node | string }]
export function table(columns, rows, emptyText = "Nothing yet.") {
  if (!rows.length) return h("p", { className: "empty" }, emptyText);
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((column) => h("th", {}, column.title)))),
    h(
      "tbody",
      {},
      rows.map((row) => h("tr", {}, columns.map((column) => h("td", {}, column.cell(row) ?? "")))),
    ),
  );
}

// An RFC 9457 problem, readably: what went wrong, the rule or step, and each bad field or line.
export function showProblem(container, error) {
  const problem = error.problem || { title: "Error", detail: String(error.message || error) };
  const facts = [];
  if (problem.rule) {
    facts.push(`Rule: ${problem.rule}${problem.parameter ? ` (parameter ${problem.parameter})` : ""}`);
  }
  if (problem.step) facts.push(`Step: ${problem.step}`);
  if (problem.errorCode) facts.push(`AWS: ${problem.errorCode}${problem.errorMessage ? ` - ${problem.errorMessage}` : ""}`);
  if (problem.thingName) facts.push(`Thing: ${problem.thingName}`);
  const errors = Object.entries(problem.errors || {}).flatMap(([field, messages]) =>
    (Array.isArray(messages) ? messages : [messages]).map((message) => h("li", {}, `${field}: ${message}`)),
  );
  const parts = [
    h("strong", {}, `${problem.title || "Error"}${error.status ? ` (${error.status})` : ""}`),
    h("div", { className: "detail" }, problem.detail || ""),
    facts.length ? h("div", {}, facts.join(" · ")) : null,
    errors.length ? h("ul", { className: "errors" }, errors) : null,
    problem.requestId ? h("div", { className: "meta" }, `Request ${problem.requestId}`) : null,
  ];
  container.replaceChildren(...parts.filter(Boolean));
  container.hidden = false;
}

export function clearProblem(container) {
  container.hidden = true;
  container.replaceChildren();
}

export function download(link, blob, filename) {
  if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = filename;
}

// A form's submit, kept on the page: `handler` gets the form.
export function onSubmit(id, handler) {
  byId(id).addEventListener("submit", (event) => {
    event.preventDefault();
    handler(event.target);
  });
}

// Runs `work` (a call to the service and what is done with its answer): the problem box
// `container` is cleared when it succeeds and shows its error when it fails.
export async function attempt(container, work) {
  try {
    await work();
    clearProblem(container);
  } catch (error) {
    showProblem(container, error);
  }
}

// A key's or a device CA's provisions against its quota, and its rate limit.
export function describeLimits(item) {
  return [
    item.maxProvisions ? `${item.provisions} / ${item.maxProvisions}` : `${item.provisions}`,
    item.ratePerMinute ? `${item.ratePerMinute}/min` : null,
  ]
    .filter(Boolean)
    .join(" · ");
}

// Each <div data-listing="NAME" [data-more]> becomes a list's parts: the problem box NAME-error,
// the table's place NAME-table and, with data-more, the button NAME-more for the next page.
export function expandListings(root = document) {
  for (const slot of root.querySelectorAll("[data-listing]")) {
    const name = slot.dataset.listing;
    const parts = [h("div", { id: `${name}-error`, className: "problem", hidden: true }), h("div", { id: `${name}-table` })];
    if (slot.hasAttribute("data-more")) {
      parts.push(h("p", {}, h("button", { id: `${name}-more`, type: "button", className: "quiet", hidden: true }, "More")));
    }
    slot.replaceWith(...parts);
  }
}

// A list read page by page: `rows` so far and the cursor `next` of the page after them (null at
// the end). The button NAME-more asks `load(next)` for that page, and shows only while there is one.
// Only the answer to the latest request counts: an earlier one that lands later (More, then a new
// filter) would add another list's rows and cursor.
export class Pages {
  constructor(name, load) {
    this.rows = [];
    this.next = null;
    this.asked = 0;
    this.more = byId(`${name}-more`);
    this.more.addEventListener("click", () => load(this.next));
  }

  // Before asking the service for a page: the ticket its answer is added with.
  ask() {
    this.asked += 1;
    return this.asked;
  }

  // The page `data` ({ items, next }) the service answered for the cursor `after` (none: the
  // first); false, and nothing changed, when a later request was made meanwhile.
  add(ticket, after, data) {
    if (ticket !== this.asked) return false;
    this.rows = after ? this.rows.concat(data.items) : data.items;
    this.next = data.next;
    this.more.hidden = this.next === null;
    return true;
  }
}
