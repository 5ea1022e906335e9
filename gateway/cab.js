"use strict";
// The cab view's script (gateway/cab.py): polls latest.json every two seconds and draws
// each compartment. Text goes in with textContent only: a label is never markup.
const zh = navigator.language.startsWith("zh") || !navigator.language.startsWith("en");
const T = zh
  ? { setpoint: "设定值", door: "门", open: "开", closed: "关", age: "最近读数", up: "已连接中心", down: "无信号：数据保存在本车", s: "秒前" }
  : { setpoint: "Setpoint", door: "Door", open: "Open", closed: "Closed", age: "Last reading", up: "uplink connected", down: "no signal: readings kept on board", s: "s ago" };

function fmt(v) { return v == null ? "—" : Number(v).toFixed(1); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function compartment(c, nowMs) {
  const age = c.ts_ms ? Math.round((nowMs - c.ts_ms) / 1000) : null;
  const section = el("section", age !== null && age > 600 ? "stale" : "");
  section.dataset.device = c.device;
  section.append(el("h2", "", c.label));
  const temp = el("div", "temp");
  temp.append(el("span", "value", fmt(c.temp_c)), el("span", "unit", "°C"));
  const facts = el("dl");
  const door = c.door_open == null ? "—" : c.door_open ? T.open : T.closed;
  facts.append(
    el("dt", "", T.setpoint), el("dd", "setpoint", `${fmt(c.setpoint_c)} °C`),
    el("dt", "", T.door), el("dd", "door", door),
    el("dt", "", T.age), el("dd", "age", age == null ? "—" : `${age} ${T.s}`),
  );
  section.append(temp, facts);
  return section;
}

async function tick() {
  try {
    const data = await (await fetch("latest.json", { cache: "no-store" })).json();
    const uplink = document.getElementById("uplink");
    uplink.textContent = data.uplink ? T.up : T.down;
    uplink.className = data.uplink ? "" : "down";
    document.getElementById("cab").replaceChildren(
      ...data.compartments.map((c) => compartment(c, data.now_ms)),
    );
  } catch (e) { /* the gateway is restarting: try again */ }
}

tick();
setInterval(tick, 2000);
