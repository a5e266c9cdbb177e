// The confirmation step of a destructive action: a modal dialog that says what will happen and,
// for what cannot be undone, asks the operator to type a word (the thing's name, the start of
// the certificate id) before the button works. Resolves true only on that button.

import { byId } from "./dom.js";

export function confirmAction({ title, text, word = null, button }) {
  const dialog = byId("confirm-dialog");
  const input = byId("confirm-input");
  const ok = byId("confirm-ok");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = text;
  byId("confirm-typed").hidden = word === null;
  byId("confirm-word").textContent = word || "";
  input.value = "";
  ok.textContent = button;
  ok.disabled = word !== null;
  return new Promise((resolve) => {
    const controller = new AbortController();
    const finish = (answer) => {
      controller.abort();
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const options = { signal: controller.signal };
    input.addEventListener("input", () => (ok.disabled = input.value.trim() !== word), options);
    ok.addEventListener("click", () => finish(true), options);
    byId("confirm-cancel").addEventListener("click", () => finish(false), options);
    dialog.addEventListener("cancel", () => finish(false), options); // Escape
    dialog.showModal();
    (word === null ? ok : input).focus();
  });
}
