// The crew's tablet page: its missions, and its reports back over a weak mobile link.
//
//   login (POST /api/v1/auth/login) ─► the session token in sessionStorage (it survives a reload, not the tab)
//   missions: GET /api/v1/workorders?open=true (the server gives a crew account its own missions only),
//             in the order of the work: on site, en route, assigned, then by due time
//   a button ─► an action {order, step, body + idempotency_key} appended to the queue in localStorage ─► flush
//   flush: each queued action POSTed in order; answered (2xx) or refused for good (4xx but 401/408/429) ─►
//          removed; no answer (offline, 5xx, 401: log in again) ─► kept, retried with back-off (2 s .. 30 s),
//          on the browser's "online" event and at every page load.
//   The idempotency key is made once, when the button is pressed: however often the action is sent (a reply
//   lost on the way back, a reload, two tabs) the server applies it once (scada.workorders.store).
//   "done" with a photo: the photo is drawn on a canvas at most PHOTO_PX on its longer side (EXIF orientation
//   applied by createImageBitmap; the canvas's JPEG carries no metadata, so no GPS position leaves the tablet)
//   and queued as its own item before the "done" (POST /api/v1/workorders/{id}/photos, the JPEG as the body);
//   the same photo sent twice is kept once by the server (named by its content), which cleans it again anyway.
"use strict";

const QUEUE = "scada.crew.queue.v1";
const TOKEN = "scada.crew.token";
const PHOTO_PX = 1600;  // a few hundred kB as JPEG: under the server's 1 MiB body limit and localStorage's quota
const STEP_ORDER = { on_site: 0, en_route: 1, assigned: 2, new: 3, done: 4 };
let retryDelay = 2000;
let retryTimer = null;
let flushing = false;

const $ = (sel) => document.querySelector(sel);

function queue() {
  try { return JSON.parse(localStorage.getItem(QUEUE) || "[]"); } catch (e) { return []; }
}
function saveQueue(items) {
  try {
    localStorage.setItem(QUEUE, JSON.stringify(items));
  } catch (e) {  // quota: the new item is not kept (the caller says so); the queue as it was stays
    showSync();
    return false;
  }
  showSync();
  return true;
}
function token() { return sessionStorage.getItem(TOKEN); }

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function showSync(text) {
  const n = queue().length;
  $("#sync").textContent = text || (n ? `${n} action(s) waiting to be sent` : "all sent");
  $("#sync").dataset.pending = String(n);
}

async function api(method, path, body, type) {
  const headers = { "Content-Type": type || "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const payload = body === undefined || type ? body : JSON.stringify(body);
  return fetch(path, { method, headers, body: payload, cache: "no-store" });
}

// a photo file → a JPEG data URL, at most PHOTO_PX on its longer side, upright, without metadata
async function reducedPhoto(file) {
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  const scale = Math.min(1, PHOTO_PX / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return canvas.toDataURL("image/jpeg", 0.85);
}

// a data URL → its bytes (fetch() of a data: URL is not allowed by the page's connect-src 'self')
function dataBytes(url) {
  const bin = atob(url.slice(url.indexOf(",") + 1));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

// ------------------------------------------------------------------ login
function showLogin(error) {
  $("#login").hidden = false;
  $("#logout").hidden = true;
  $("#missions").replaceChildren();
  $("#login-error").textContent = error || "";
}

async function login(event) {
  event.preventDefault();
  let r;
  try {
    r = await api("POST", "/api/v1/auth/login", { user: $("#user").value, password: $("#password").value });
  } catch (e) {
    $("#login-error").textContent = "No network: try again when connected.";
    return;
  }
  if (!r.ok) {
    $("#login-error").textContent = "Login refused.";
    return;
  }
  const who = await r.json();
  sessionStorage.setItem(TOKEN, who.token);
  $("#password").value = "";
  $("#login").hidden = true;
  $("#logout").hidden = false;
  $("#who").textContent = who.user;
  await flush();
  await load();
}

async function logout() {
  try { await api("POST", "/api/v1/auth/logout"); } catch (e) { /* offline: the token expires by itself */ }
  sessionStorage.removeItem(TOKEN);
  showLogin();
}

// ------------------------------------------------------------------ missions
function due(ms) { return new Date(ms).toLocaleString(); }

function render(orders) {
  const list = $("#missions");
  const tpl = $("#mission");
  orders.sort((a, b) => (STEP_ORDER[a.status] ?? 9) - (STEP_ORDER[b.status] ?? 9) || a.due_ms - b.due_ms);
  list.replaceChildren(...orders.map((o) => {
    const li = tpl.content.firstElementChild.cloneNode(true);
    li.dataset.order = o.id;
    li.dataset.status = o.status;
    li.querySelector(".id").textContent = o.id;
    li.querySelector(".equipment").textContent = o.equipment;
    li.querySelector(".status").textContent = o.status.replace("_", " ");
    li.querySelector(".what").textContent = o.what;
    li.querySelector(".template").textContent = o.template;
    li.querySelector(".commune").textContent = o.commune;
    li.querySelector(".position").textContent = `${o.lat.toFixed(5)}, ${o.lon.toFixed(5)}`;
    li.querySelector(".nav").href = `geo:${o.lat},${o.lon}?q=${o.lat},${o.lon}(${encodeURIComponent(o.equipment)})`;
    li.querySelector(".due").textContent = due(o.due_ms) + (o.overdue ? " (overdue)" : "");
    li.querySelector(".priority").textContent = String(o.priority);
    for (const b of li.querySelectorAll("button[data-action]")) {
      b.addEventListener("click", () => press(o.id, b.dataset.action, li));
    }
    return li;
  }));
  if (!orders.length) $("#message").textContent = "No mission.";
}

async function load() {
  if (!token()) return showLogin();
  let r;
  try {
    r = await api("GET", "/api/v1/workorders?open=true&limit=200");
  } catch (e) {
    $("#message").textContent = "No network: the missions shown may be old.";
    return;
  }
  if (r.status === 401) { sessionStorage.removeItem(TOKEN); return showLogin("Session ended: log in again."); }
  if (!r.ok) { $("#message").textContent = `The server refused the list (${r.status}).`; return; }
  $("#message").textContent = "";
  $("#login").hidden = true;
  $("#logout").hidden = false;
  render((await r.json()).orders.filter((o) => o.status !== "resolved"));
}

// ------------------------------------------------------------------ actions, queued
async function press(order, step, li) {
  const body = { idempotency_key: newKey() };
  const items = [];
  if (step === "done") {
    const note = li.querySelector(".note").value.trim();
    if (note) body.note = note;
    const file = li.querySelector(".photo").files[0];
    if (file) {
      let photo;
      try {
        photo = await reducedPhoto(file);
      } catch (e) {
        $("#message").textContent = "This photo cannot be read: choose another, or none.";
        return;
      }
      items.push({ order, step: "photos", photo, body: { idempotency_key: newKey() }, at: Date.now() });
    }
  }
  if (step === "cannot-repair") {
    const reason = li.querySelector(".reason").value.trim();
    if (!reason) { $("#message").textContent = "Say why it cannot be repaired."; return; }
    body.reason = reason;
  }
  items.push({ order, step, body, at: Date.now() });
  if (!saveQueue([...queue(), ...items])) {
    $("#message").textContent = "No room left on this tablet for the photo: send it when connected, or none.";
    return;
  }
  li.querySelector(".status").textContent = `${step.replace("-", " ")} (sending)`;
  flush();
}

function retryLater() {
  if (retryTimer) return;
  retryTimer = setTimeout(() => { retryTimer = null; flush(); }, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 30000);
}

async function flush() {
  if (flushing) return;
  flushing = true;
  try {
    while (queue().length) {
      if (!token()) { showSync("waiting for login"); return; }
      const item = queue()[0];
      let r;
      try {
        const path = `/api/v1/workorders/${encodeURIComponent(item.order)}/${item.step}`;
        r = item.photo ? await api("POST", path, dataBytes(item.photo), "image/jpeg")
          : await api("POST", path, item.body);
      } catch (e) {
        showSync(`offline: ${queue().length} action(s) waiting`);
        retryLater();
        return;
      }
      if (r.status === 401) { sessionStorage.removeItem(TOKEN); showLogin("Session ended: log in again."); return; }
      if (r.status >= 500 || r.status === 408 || r.status === 429) { retryLater(); return; }
      if (!r.ok) {  // refused for good (the order's state does not allow it): said, and dropped
        let why = "";
        try { why = (await r.json()).why || ""; } catch (e) { /* not JSON */ }
        $("#message").textContent = `${item.order}: ${item.step} refused: ${why}`;
      }
      // answered: this very item leaves the queue (another tab may have sent and removed it already)
      saveQueue(queue().filter((q) => q.body.idempotency_key !== item.body.idempotency_key));
      retryDelay = 2000;
    }
    showSync();
    await load();
  } finally {
    flushing = false;
  }
}

window.addEventListener("online", () => flush());
document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  showSync();
  if (token()) { flush(); load(); } else { showLogin(); }
});
