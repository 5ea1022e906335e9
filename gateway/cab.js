"use strict";
// The cab view's script (gateway/cab.py): polls latest.json every two seconds and draws
// each compartment. Text goes in with textContent only: a label is never markup.
// A compartment in breach (judged on the truck by the alert service's own rules, also
// with no signal) turns amber (warning) or red (critical), a banner says which and since
// when, and, once the driver has turned the sound on, the tablet beeps.
const zh = navigator.language.startsWith("zh") || !navigator.language.startsWith("en");
const T = zh
  ? { setpoint: "设定值", door: "门", open: "开", closed: "关", age: "最近读数", up: "已连接中心", down: "无信号：数据保存在本车", s: "秒前",
      limits: "限值", warning: "预警", critical: "严重", since: "起始", outside: "超出限值（计时中）", sound: "开启报警提示音", soundOn: "报警提示音已开启",
      kinds: { high: "温度过高", low: "温度过低", cumulative_high: "累计超高", cumulative_low: "累计过低", sensor_fault: "传感器故障", door_open: "门未关" } }
  : { setpoint: "Setpoint", door: "Door", open: "Open", closed: "Closed", age: "Last reading", up: "uplink connected", down: "no signal: readings kept on board", s: "s ago",
      limits: "Limits", warning: "WARNING", critical: "CRITICAL", since: "since", outside: "outside its limits (delay running)", sound: "Turn on the alarm sound", soundOn: "Alarm sound on",
      kinds: { high: "too warm", low: "too cold", cumulative_high: "too long too warm", cumulative_low: "too long too cold", sensor_fault: "sensor fault", door_open: "door left open" } };
const RANK = { warning: 1, critical: 2 };

function fmt(v) { return v == null ? "—" : Number(v).toFixed(1); }
function clock(ms) { return new Date(ms).toLocaleTimeString(zh ? "zh-CN" : "en-GB", { hour: "2-digit", minute: "2-digit" }); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function limitsText(l) {
  if (!l) return "—";
  const lo = l.low_c == null ? "" : fmt(l.low_c), hi = l.high_c == null ? "" : fmt(l.high_c);
  return lo && hi ? `${lo} – ${hi} °C` : hi ? `≤ ${hi} °C` : `≥ ${lo} °C`;
}

function compartment(c, nowMs) {
  const age = c.ts_ms ? Math.round((nowMs - c.ts_ms) / 1000) : null;
  const alarm = c.alarm || {};
  const state = alarm.level || (alarm.outside ? "outside" : "");
  const section = el("section", [age !== null && age > 600 ? "stale" : "", state].join(" ").trim());
  section.dataset.device = c.device;
  section.dataset.state = state || "ok";
  section.append(el("h2", "", c.label));
  const temp = el("div", "temp");
  temp.append(el("span", "value", fmt(c.temp_c)), el("span", "unit", "°C"));
  const facts = el("dl");
  const door = c.door_open == null ? "—" : c.door_open ? T.open : T.closed;
  facts.append(
    el("dt", "", T.limits), el("dd", "limits", limitsText(alarm.limits)),
    el("dt", "", T.setpoint), el("dd", "setpoint", `${fmt(c.setpoint_c)} °C`),
    el("dt", "", T.door), el("dd", "door", door),
    el("dt", "", T.age), el("dd", "age", age == null ? "—" : `${age} ${T.s}`),
  );
  section.append(temp);
  if (alarm.level) {
    section.append(el("p", "why", `${T[alarm.level]} · ${T.kinds[alarm.kind] || alarm.kind} · ${T.since} ${clock(alarm.since_ms)}`));
  } else if (alarm.outside) {
    section.append(el("p", "why", T.outside));
  }
  section.append(facts);
  return section;
}

function banner(compartments) {
  const worst = compartments
    .filter((c) => c.alarm && c.alarm.level)
    .sort((a, b) => RANK[b.alarm.level] - RANK[a.alarm.level] || a.alarm.since_ms - b.alarm.since_ms)[0];
  const node = document.getElementById("banner");
  if (!worst) {
    node.hidden = true;
    node.className = "";
    return null;
  }
  const a = worst.alarm;
  node.textContent = `${T[a.level]}: ${worst.label} · ${T.kinds[a.kind] || a.kind} · ${T.since} ${clock(a.since_ms)}`;
  node.className = a.level;
  node.hidden = false;
  return a.level;
}

// sound: browsers let a page make sound only after a tap, so the driver turns it on once
let audio = null;
let lastLevel = null;
function beep(times) {
  if (!audio) return;
  for (let i = 0; i < times; i += 1) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.3;
    osc.connect(gain).connect(audio.destination);
    const at = audio.currentTime + i * 0.35;
    osc.start(at);
    osc.stop(at + 0.2);
  }
}
document.getElementById("sound").textContent = T.sound;
document.getElementById("sound").addEventListener("click", (event) => {
  audio = audio || new AudioContext();
  audio.resume();
  event.target.textContent = T.soundOn;
  event.target.setAttribute("aria-pressed", "true");
  beep(1);
});

async function tick() {
  try {
    const data = await (await fetch("latest.json", { cache: "no-store" })).json();
    const uplink = document.getElementById("uplink");
    uplink.textContent = data.uplink ? T.up : T.down;
    uplink.className = data.uplink ? "" : "down";
    document.getElementById("cab").replaceChildren(
      ...data.compartments.map((c) => compartment(c, data.now_ms)),
    );
    const level = banner(data.compartments);
    // critical: three beeps every poll until it is over; a new warning: one beep
    if (level === "critical") beep(3);
    else if (level === "warning" && lastLevel !== "warning") beep(1);
    lastLevel = level;
    document.body.dataset.alarm = level || "none";
  } catch (e) { /* the gateway is restarting: try again */ }
}

tick();
setInterval(tick, 2000);
