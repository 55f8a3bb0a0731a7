// The one way the page talks to the server: the public HTTP API, with the API key when one is set.
// Every error the server sends is {"error": {"message", "type", "code"}}; ApiError carries that message.

const KEY_STORE = "winnow.apiKey";
let memoryKey = ""; // where sessionStorage is unavailable

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
  } catch {
    /* storage disabled: the key lives as long as the page */
  }
  memoryKey = key;
}

function currentKey() {
  return apiKey() || memoryKey;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = currentKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `could not reach the server (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.error?.message ?? data?.detail ?? (text || response.statusText);
    throw new ApiError(response.status, typeof message === "string" ? message : JSON.stringify(message));
  }
  return data;
}

export function collectionPath(name, ...rest) {
  return ["/collections", encodeURIComponent(name), ...rest].join("/");
}
