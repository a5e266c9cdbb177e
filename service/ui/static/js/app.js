// The operator page: sign in with an API key, then the views its role allows. Each view is a
// module with setUp() (once) and show(caller) (each time it is opened).

import { call, session } from "./api.js";
import * as audit from "./audit.js";
import * as devicecas from "./devicecas.js";
import * as devices from "./devices.js";
import { byId, clearProblem, expandListings, onSubmit, showProblem } from "./dom.js";
import * as enrollments from "./enrollments.js";
import * as health from "./health.js";
import * as keys from "./keys.js";
import * as orphans from "./orphans.js";
import * as provision from "./provision.js";
import * as reconcile from "./reconcile.js";

const VIEWS = { provision, keys, enrollments, devicecas, audit, devices, orphans, reconcile, health };
let caller = null;

function start() {
  expandListings();
  for (const view of Object.values(VIEWS)) view.setUp();
  onSubmit("sign-in-form", () => signIn(byId("api-key").value.trim()));
  byId("sign-out").addEventListener("click", () => signOut());
  for (const tab of byId("tabs").querySelectorAll("button")) {
    tab.addEventListener("click", () => open(tab.dataset.view));
  }
  window.addEventListener("hashchange", () => caller && open(location.hash.slice(1)));
  window.addEventListener("session-rejected", (event) => caller && signOut(event.detail));
  if (session.key) signIn(session.key);
}

async function signIn(key) {
  const problem = byId("sign-in-error");
  const button = byId("sign-in-submit");
  button.disabled = true;
  try {
    const { data } = await call("GET", "/caller", { key });
    session.set(key);
    caller = data;
    byId("api-key").value = "";
    clearProblem(problem);
    enter();
  } catch (error) {
    session.clear();
    showProblem(problem, error);
  } finally {
    button.disabled = false;
  }
}

function enter() {
  const admin = caller.role === "admin";
  byId("who").textContent = `${caller.keyId} · ${caller.role}`;
  byId("who").hidden = false;
  byId("sign-out").hidden = false;
  byId("sign-in").hidden = true;
  for (const tab of byId("tabs").querySelectorAll("button")) {
    tab.hidden = tab.hasAttribute("data-admin") && !admin;
  }
  byId("tabs").hidden = false;
  open(location.hash.slice(1));
}

function open(name) {
  const tab = byId("tabs").querySelector(`button[data-view="${CSS.escape(name || "")}"]`);
  if (!tab || tab.hidden) name = "provision";
  for (const button of byId("tabs").querySelectorAll("button")) {
    button.toggleAttribute("aria-current", false);
    if (button.dataset.view === name) button.setAttribute("aria-current", "page");
  }
  for (const view of Object.keys(VIEWS)) byId(`view-${view}`).hidden = view !== name;
  if (location.hash.slice(1) !== name) history.replaceState(null, "", `#${name}`);
  VIEWS[name].show(caller);
}

function signOut(reason) {
  session.clear();
  caller = null;
  provision.forget();
  keys.hideSecret();
  byId("tabs").hidden = true;
  byId("who").hidden = true;
  byId("sign-out").hidden = true;
  for (const view of Object.keys(VIEWS)) byId(`view-${view}`).hidden = true;
  byId("sign-in").hidden = false;
  if (reason) showProblem(byId("sign-in-error"), reason);
  else clearProblem(byId("sign-in-error"));
  history.replaceState(null, "", location.pathname);
}

start();
