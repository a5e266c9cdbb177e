// What the lifecycle views share: whether AWS IoT's control plane can be used (GET
// /admin/lifecycle says why not), status badges, and CSV cells a spreadsheet shows as text.

import { call } from "./api.js";
import { h } from "./dom.js";

// Shows the reason in `container` when the control plane cannot be used; true when it can.
export async function controlPlaneUsable(container) {
  try {
    const { data } = await call("GET", "/admin/lifecycle");
    const plane = data.controlPlane;
    if (plane.available) {
      container.hidden = true;
      return true;
    }
    container.replaceChildren(
      h("strong", {}, "AWS IoT's control plane cannot be used"),
      h("div", { className: "detail" }, plane.problem || ""),
      h("div", { className: "meta" }, "Provisioning works without it; these actions do not."),
    );
    container.hidden = false;
    return false;
  } catch {
    return true; // the view's own call shows what went wrong
  }
}

export function statusBadge(status) {
  return h("span", { className: `badge ${String(status).toLowerCase()}` }, String(status));
}

// A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection"):
// such a cell gets a leading apostrophe, as the service's own CSV does.
const FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"];

export function csv(fields, rows) {
  const quote = (value) => {
    let text = value === null || value === undefined ? "" : String(value);
    if (typeof value === "string" && FORMULA_STARTS.some((start) => text.startsWith(start))) text = `'${text}`;
    return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  };
  const lines = [fields.join(",")].concat(rows.map((row) => fields.map((field) => quote(row[field])).join(",")));
  return `${lines.join("\n")}\n`;
}
