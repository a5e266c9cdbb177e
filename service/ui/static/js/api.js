// The service's JSON API, called with the signed-in key. Failures become ApiError carrying the
// RFC 9457 problem the service answered (or one made here for a network failure).

const STORAGE_KEY = "iot-provisioner.apiKey";

// The key lives in this tab only: sessionStorage is not shared with other tabs and is gone when
// the tab closes.
export const session = {
  get key() {
    return sessionStorage.getItem(STORAGE_KEY);
  },
  set(key) {
    sessionStorage.setItem(STORAGE_KEY, key);
  },
  clear() {
    sessionStorage.removeItem(STORAGE_KEY);
  },
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

// The API sits one level above the page (/ui/ -> /), so the page also works behind a path prefix.
export function apiUrl(path) {
  return new URL(path.replace(/^\//, "../"), document.baseURI).toString();
}

export async function call(method, path, options = {}) {
  const { json, body, contentType, headers = {}, key = session.key, okStatuses = [] } = options;
  const init = { method, headers: { ...headers }, cache: "no-store" };
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
    init.headers["Content-Type"] = contentType;
  }
  let response;
  try {
    response = await fetch(apiUrl(path), init);
  } catch (error) {
    throw new ApiError(0, {
      title: "The service could not be reached",
      detail: `${error.message}. Nothing was answered; trying again is safe.`,
    });
  }
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (response.ok || okStatuses.includes(response.status)) {
    return { status: response.status, data, headers: response.headers };
  }
  const problem =
    typeof data === "object" && data !== null
      ? data
      : { title: `HTTP ${response.status}`, detail: String(data).slice(0, 300) };
  const error = new ApiError(response.status, problem);
  // The signed-in key stopped working (revoked, expired): the page goes back to its sign-in form.
  if (response.status === 401 && key && key === session.key) {
    window.dispatchEvent(new CustomEvent("session-rejected", { detail: error }));
  }
  throw error;
}

// A query string from the non-empty fields of `params`.
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
