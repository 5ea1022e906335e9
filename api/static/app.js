// coldchain pages: live updates by Server-Sent Events, acknowledgements, sign-in.
"use strict";
const W = JSON.parse(document.getElementById("words").textContent);
const LANG = document.body.dataset.lang;

// a place's name in the reader's language (its Chinese name where it has one)
function placeName(a) { return (LANG === "zh" && a.location_name_zh) || a.location_name; }
// times as the county reads them: in its zone (not the browser's), with the date
const TZ = document.body.dataset.tz || "Asia/Shanghai";
function fmtTime(ms, dateOnly) {
  const d = new Date(Number(ms));
  const opts = dateOnly
    ? { dateStyle: "medium", timeZone: TZ }
    : { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
        second: "2-digit", timeZone: TZ, timeZoneName: "shortOffset" };
  return d.toLocaleString(LANG === "zh" ? "zh-CN" : "en-GB", opts);
}
function fmtAge(ms) {
  const s = Math.max(0, (Date.now() - Number(ms)) / 1000);
  const text = s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  return LANG === "zh" ? `${text}${W.ago}` : `${text} ${W.ago}`;
}
function paintTimes(root) {
  root.querySelectorAll("time[data-ts]").forEach((el) => {
    if (el.dataset.ts) el.textContent = fmtTime(el.dataset.ts, el.dataset.dateOnly);
  });
}
function paintAges() {
  document.querySelectorAll("[data-age-of]").forEach((el) => {
    if (el.dataset.ageOf) el.textContent = fmtAge(el.dataset.ageOf);
  });
}

async function api(method, path, body) {
  const multipart = body instanceof FormData;  // a file upload: the browser sets the type
  const reply = await fetch(path, {
    method, credentials: "same-origin",
    headers: body && !multipart ? { "Content-Type": "application/json" } : {},
    body: body ? (multipart ? body : JSON.stringify(body)) : undefined,
  });
  let data = null;
  try { data = await reply.json(); } catch (e) { /* empty body */ }
  if (!reply.ok) {
    const detail = data && data.detail;
    if (Array.isArray(detail)) {  // pydantic's list: which field, what was wrong
      // (or a refused import's problems, each naming its row and column)
      throw new Error(detail.map((d) => typeof d === "string" ? d : `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; "));
    }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail || reply.status));
  }
  return data;
}

// ---------------------------------------------------------------- sign-in, sign-out
const login = document.getElementById("login");
if (login) {
  login.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(login);
    try {
      await api("POST", "/api/auth/login", { username: f.get("username"), password: f.get("password") });
      location.href = login.dataset.next || "/board";
    } catch (e) { document.getElementById("login-error").textContent = e.message; }
  });
}
const signOut = document.getElementById("sign-out");
if (signOut) signOut.addEventListener("click", async () => { await api("POST", "/api/auth/logout"); location.href = "/login"; });

// ---------------------------------------------------------------- alarms
const alarmList = document.getElementById("alarms");
let knownCritical = null;

function kindText(kind) { return W["kind_" + kind] || kind; }
function esc(s) { return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

// the alarms of one place, kind, level and state are one thing to deal with
function groupAlarms(alarms) {
  const groups = new Map();
  for (const a of alarms) {
    const key = [a.location_id || a.gateway, a.kind, a.level, a.state].join("|");
    const g = groups.get(key);
    if (!g) {
      groups.set(key, { ...a, ids: [a.id], sensors: [a.sensor || a.gateway], batches: [...a.batches] });
      continue;
    }
    g.ids.push(a.id);
    g.sensors.push(a.sensor || a.gateway);
    g.start_ms = Math.min(g.start_ms, a.start_ms);
    if (a.min_value != null) g.min_value = g.min_value == null ? a.min_value : Math.min(g.min_value, a.min_value);
    if (a.max_value != null) g.max_value = g.max_value == null ? a.max_value : Math.max(g.max_value, a.max_value);
    g.batches = [...new Set([...g.batches, ...a.batches])].sort();
  }
  return [...groups.values()];
}

function alarmItem(a, canAck) {
  const clock = a.kind === "gateway_clock" && a.settings && a.settings.way ? W["clock_" + a.settings.way].replace("{n}", a.settings.off_min) : "";
  const values = esc(clock) + (a.max_value != null ? `${esc(W.max)} ${a.max_value.toFixed(1)}` : "") + (a.min_value != null ? ` ${esc(W.min)} ${a.min_value.toFixed(1)}` : "");
  const links = alarmList.dataset.batchLinks === "yes";
  const batches = a.batches.length ? a.batches.map((b) => links ? `<a href="/batches/${esc(b)}">${esc(b)}</a>` : `<span class="batch">${esc(b)}</span>`).join(" ") : "—";
  const acked = a.acknowledged_by ? ` · ${W.acknowledged_by} ${esc(a.acknowledged_by)}: “${esc(a.ack_comment)}”` : "";
  const ids = a.ids.join(",");
  const form = canAck && !a.acknowledged_by
    ? `<form class="ack" data-alarms="${ids}"><input name="comment" placeholder="${esc(W.comment)}" aria-label="${esc(W.comment)}"><button type="submit">${esc(W.acknowledge)}</button><span class="error" role="alert"></span></form>` : "";
  return `<li class="alarm level-${a.level} state-${a.state}" data-alarm="${a.ids[0]}" data-alarms="${ids}"><div class="what"><span class="level">${esc(W[a.level])}</span> <span class="kind">${esc(kindText(a.kind))}</span> <strong>${esc(placeName(a) || "gateway " + a.gateway)}</strong> <span class="values">${values}</span> <small class="sensors">${esc(a.sensors.join(", "))}</small></div><div class="meta">${esc(W.since)} <time data-ts="${a.start_ms}"></time> · ${esc(W.batches_affected)}: ${batches} · <span class="state">${esc(W[a.state] || a.state)}</span>${acked}</div>${form}</li>`;
}

async function refreshAlarms() {
  if (!alarmList) return;
  // one alarm's page (a notification's link) follows that alarm only
  const only = alarmList.dataset.only;
  const alarms = only ? [await api("GET", `/api/alarms/${only}`)] : await api("GET", "/api/alarms");
  const canAck = alarmList.dataset.canAck === "yes";
  // a comment being typed survives a live update of the list (the same alarms' form)
  const drafts = new Map([...alarmList.querySelectorAll("form.ack")]
    .filter((f) => f.comment.value).map((f) => [f.dataset.alarms, f.comment.value]));
  const focused = document.activeElement && document.activeElement.closest("form.ack");
  const focusedKey = focused ? focused.dataset.alarms : null;
  alarmList.innerHTML = alarms.length ? groupAlarms(alarms).map((a) => alarmItem(a, canAck)).join("") : `<li class="empty">${esc(W.no_alarms)}</li>`;
  for (const f of alarmList.querySelectorAll("form.ack")) {
    if (drafts.has(f.dataset.alarms)) f.comment.value = drafts.get(f.dataset.alarms);
    if (f.dataset.alarms === focusedKey) f.comment.focus();
  }
  paintTimes(alarmList);
  const count = document.getElementById("alarm-count") || document.getElementById("wall-alarms");
  if (count) count.textContent = alarms.length;
  const critical = alarms.filter((a) => a.level === "critical" && a.state === "active");
  const ids = new Set(critical.map((a) => a.id));
  if (knownCritical !== null && critical.some((a) => !knownCritical.has(a.id))) announceCritical(critical);
  knownCritical = ids;
  const banner = document.getElementById("critical-banner");
  if (banner && !critical.length) { banner.hidden = true; document.title = document.title.replace(/^\(!\) /, ""); }
}

function announceCritical(critical) {
  const banner = document.getElementById("critical-banner");
  if (banner) {
    banner.hidden = false;
    banner.textContent = `${W.new_critical}: ` + critical.map((a) => `${placeName(a) || a.gateway} · ${kindText(a.kind)}`).join("; ");
  }
  if (!document.title.startsWith("(!) ")) document.title = "(!) " + document.title;
  try {  // a short alarm tone; browsers may hold it until the page has been touched
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const osc = ctx.createOscillator(); osc.frequency.value = 880; osc.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.6);
  } catch (e) { /* no audio */ }
}

if (alarmList) {
  alarmList.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form.ack");
    if (!form) return;
    ev.preventDefault();
    const comment = form.comment.value.trim();
    const error = form.querySelector(".error");
    if (!comment) { error.textContent = W.comment_needed; form.comment.focus(); return; }
    try {
      for (const id of form.dataset.alarms.split(",")) await api("POST", `/api/alarms/${id}/ack`, { comment });
      await refreshAlarms();
    } catch (e) { error.textContent = e.message; }
  });
  knownCritical = new Set([...alarmList.querySelectorAll(".alarm.level-critical.state-active")]
    .flatMap((el) => el.dataset.alarms.split(",").map(Number)));
}

// ---------------------------------------------------------------- live readings
function onReading(r) {
  const key = `${r.gateway}/${r.sensor}`;
  document.querySelectorAll(`[data-sensor="${CSS.escape(key)}"]`).forEach((el) => {
    const value = el.querySelector(".value") || el;
    if (r.quantity === "door_open") value.textContent = r.value ? el.dataset.open : el.dataset.closed;
    else if (r.quantity === "position") {
      if (r.lat_deg != null) value.textContent = `${r.lat_deg.toFixed(4)}, ${r.lon_deg.toFixed(4)}`;
      const speed = document.getElementById("speed");
      if (speed && r.speed_kmh != null) speed.textContent = Math.round(r.speed_kmh);
    } else value.textContent = r.value == null ? "—" : Number(r.value).toFixed(1);
    el.dataset.ts = r.ts_ms;
    if (r.correction_c) el.title = `${W.raw} ${Number(r.raw_value).toFixed(1)} °C, ${W.correction} ${r.correction_c > 0 ? "+" : ""}${r.correction_c.toFixed(1)} °C`;
    const age = el.querySelector("[data-age-of]") || el.closest("section, article")?.querySelector("[data-age-of]");
    if (age && r.quantity === "temp_c") age.dataset.ageOf = r.ts_ms;
  });
}

if (document.querySelector("[data-sensor]") || alarmList) {
  const source = new EventSource("/api/live");
  source.addEventListener("reading", (ev) => onReading(JSON.parse(ev.data)));
  source.addEventListener("alarm", () => refreshAlarms().catch(() => {}));
  source.addEventListener("status", (ev) => {
    const s = JSON.parse(ev.data);
    document.querySelectorAll(`.gateway[data-gateway="${CSS.escape(s.gateway)}"]`).forEach((el) => {
      el.className = `gateway gw-${s.state}`;
      el.textContent = `${s.gateway}: ${W[s.state.replace("-", "_")] || s.state}`;
    });
    // the wall's truck tiles: an offline truck turns grey
    document.querySelectorAll(`.tile.truck[data-truck="${CSS.escape(s.gateway)}"]`).forEach((el) => {
      el.className = `tile truck gw-${s.state}`;
      const name = el.querySelector(".name");
      if (name) name.textContent = `${s.gateway} · ${W[s.state.replace("-", "_")] || s.state}`;
    });
  });
  source.addEventListener("hello", () => { document.body.dataset.live = "connected"; });
  source.onerror = () => { document.body.dataset.live = "reconnecting"; };
}

// the wall's alarm list pages by itself when it holds more than its screen
const pagedList = document.querySelector("[data-pages=yes]");
if (pagedList) {
  setInterval(() => {
    if (pagedList.scrollHeight <= pagedList.clientHeight) return;
    const atEnd = pagedList.scrollTop + pagedList.clientHeight >= pagedList.scrollHeight - 2;
    pagedList.scrollTo({ top: atEnd ? 0 : pagedList.scrollTop + pagedList.clientHeight });
  }, 10000);
}

// ---------------------------------------------------------------- clocks
paintTimes(document);
paintAges();
setInterval(paintAges, 5000);
const clock = document.getElementById("clock");
if (clock) setInterval(() => { clock.textContent = fmtTime(Date.now()); }, 1000);

// ---------------------------------------------------------------- custody (phone)
const moves = document.getElementById("moves");
if (moves) {
  moves.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.target;
    const batch = document.getElementById("batch").dataset.batch;
    const receiver = form.querySelector("input[name=receiver]");
    const error = document.getElementById("move-error");
    form.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    try {
      await api("POST", `/api/batches/${encodeURIComponent(batch)}/handover`, {
        to_location: form.dataset.to || null,
        event: form.dataset.event,
        receiver: receiver ? receiver.value.trim() || null : null,
      });
      window.location.reload();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      form.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  });
}
// the camera reads the label's QR code where the browser can (BarcodeDetector); where
// it cannot, the phone takes a photo of the label and the server reads it
// (POST /api/scan); typing the id or code always works
const scan = document.getElementById("scan");
const photoScan = document.getElementById("photo-scan");
function findBy(text) {
  document.querySelector("#find-batch input[name=code]").value = text;
  document.getElementById("find-batch").submit();
}
if (photoScan) {
  photoScan.querySelector("input").addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    const error = document.getElementById("scan-error");
    const data = new FormData();
    data.append("image", file);
    try {
      findBy((await api("POST", "/api/scan", data)).text);
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  });
}
const liveScan = scan && "BarcodeDetector" in window && navigator.mediaDevices;
if (photoScan && !liveScan) photoScan.hidden = false;
if (liveScan) {
  scan.hidden = false;
  scan.addEventListener("click", async () => {
    const video = document.getElementById("camera");
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    } catch (e) {  // no camera, or not allowed: a photo, or typing the code, still works
      scan.hidden = true;
      if (photoScan) photoScan.hidden = false;
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    await video.play();
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    const look = async () => {
      const found = await detector.detect(video).catch(() => []);
      if (found.length) {
        stream.getTracks().forEach((track) => track.stop());
        findBy(found[0].rawValue);
      } else setTimeout(look, 250);
    };
    look();
  });
}

// ---------------------------------------------------------------- forms that call the API
// <form class="api-form" data-method="PUT" data-path="/api/locations/{id}">: each named
// field is a field of the body (a number input a number, a checkbox true or false,
// checkboxes marked data-many a list of the checked values; an empty field left out),
// or with data-in="path" a part of the path; a dotted name ("profile.warning.high_c")
// is a field of a field; data-ms turns a date or a time into epoch ms, data-list a
// comma-separated text into a list. After the call the page reloads, or opens
// data-then (filled from the answer), or shows the one-time password (data-show).
function toMs(el) {
  return new Date(el.type === "date" ? `${el.value}T00:00` : el.value).getTime();
}
function setField(body, name, value) {
  const parts = name.split(".");
  let at = body;
  parts.slice(0, -1).forEach((p) => { at = at[p] = at[p] || {}; });
  at[parts[parts.length - 1]] = value;
}
function formCall(form) {
  if (form.enctype === "multipart/form-data") {  // a file with fields: sent as the form is
    const data = new FormData();
    form.querySelectorAll("input[name], select[name]").forEach((el) => {
      if (el.type === "file") { if (el.files.length) data.append(el.name, el.files[0]); }
      else if (el.type === "checkbox") { if (el.checked) data.append(el.name, "true"); }
      else if (el.value.trim() === "") return;
      else if (el.dataset.ms !== undefined) data.append(el.name, String(toMs(el)));
      else data.append(el.name, el.value.trim());
    });
    return { body: data, path: {} };
  }
  const body = {}; const path = {};
  form.querySelectorAll("input[name], select[name], textarea[name]").forEach((el) => {
    let value;
    if (el.type === "checkbox" && el.dataset.many !== undefined) {
      body[el.name] = body[el.name] || [];
      if (el.checked) body[el.name].push(el.value);
      return;
    }
    if (el.type === "checkbox") value = el.checked;
    else if (el.value.trim() === "") return;
    else if (el.type === "number") value = Number(el.value);
    else if (el.dataset.ms !== undefined) value = toMs(el);
    else if (el.dataset.list !== undefined) value = el.value.split(",").map((v) => v.trim()).filter(Boolean);
    else value = el.value.trim();
    if (el.dataset.in === "path") path[el.name] = value; else setField(body, el.name, value);
  });
  return { body, path };
}
function fillIn(template, values) {
  return template.replace(/\{(\w+)\}/g, (_m, k) => encodeURIComponent(values[k] ?? ""));
}
document.querySelectorAll("form.api-form").forEach((form) => {
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const { body, path } = formCall(form);
    const error = form.querySelector(".form-error");
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const method = form.dataset.method || "POST";
      const empty = !(body instanceof FormData) && !Object.keys(body).length;
      const sent = method === "DELETE" || (method === "POST" && empty) ? undefined : body;
      const reply = await api(method, fillIn(form.dataset.path, path), sent);
      const show = form.dataset.show && document.getElementById(form.dataset.show);
      if (show && reply && reply.password) {  // shown once: the page does not reload over it
        show.innerHTML = `${esc(W.one_time_for)} <strong>${esc(reply.username)}</strong>: <code class="password">${esc(reply.password)}</code> <a href="">${esc(W.done)}</a>`;
        show.hidden = false;
        show.scrollIntoView();
        buttons.forEach((b) => { b.disabled = false; });
        return;
      }
      if (form.dataset.then) location.href = fillIn(form.dataset.then, { ...body, ...path, ...(reply || {}) });
      else location.reload();
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      buttons.forEach((b) => { b.disabled = false; });
    }
  });
});
// an "edit" button fills its form with a row's values
document.querySelectorAll("button[data-fill]").forEach((button) => {
  button.addEventListener("click", () => {
    const form = document.getElementById(button.dataset.fill);
    const values = JSON.parse(button.dataset.values);
    form.querySelectorAll("input[name], select[name]").forEach((el) => {
      if (!(el.name in values)) return;
      const v = values[el.name];
      if (el.type === "checkbox" && el.dataset.many !== undefined) el.checked = (v || []).includes(el.value);
      else if (el.type === "checkbox") el.checked = Boolean(v);
      else el.value = v ?? "";
    });
    form.scrollIntoView();
    const first = form.querySelector("input:not([type=hidden]):not([readonly])");
    if (first) first.focus();
  });
});
// a select that sets another field (a room chosen: its product profile)
document.querySelectorAll("select[data-sets]").forEach((select) => {
  const other = select.form.querySelector(`[name="${select.dataset.sets}"]`);
  const follow = () => {
    const v = select.selectedOptions[0] && select.selectedOptions[0].dataset.value;
    if (v) other.value = v;
  };
  select.addEventListener("change", follow);
  follow();
});
