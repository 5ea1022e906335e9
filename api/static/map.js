"use strict";
// The truck map (docs/design-history.md): /api/trucks drawn with Leaflet: each truck's
// track of the day, where it is now, where it stopped and where its breaches began.
// Tiles only from the county's own tile server when one is configured; without one the
// tracks and markers stand on a plain background (no internet needed).
(function () {
  const spec = JSON.parse(document.getElementById("map-spec").textContent);
  const T = JSON.parse(document.getElementById("words").textContent);
  const tz = document.body.dataset.tz || "Asia/Shanghai";
  const status = document.getElementById("map-status");
  const COLORS = ["#1f6fb2", "#2e9e57", "#8e44ad", "#d35400", "#16a085", "#c0392b"];
  const LEVEL = { warning: "#f08c00", critical: "#d01c30" };
  if (typeof window.L !== "object") {
    status.textContent = T.no_chart_lib;
    return;
  }
  const L = window.L;
  const map = L.map("map", { zoomControl: true, attributionControl: Boolean(spec.tiles) });
  if (spec.tiles) {
    L.tileLayer(spec.tiles, { attribution: spec.attribution || "", maxZoom: 18 }).addTo(map);
  }
  L.control.scale({ imperial: false }).addTo(map);
  map.setView([35.6, 103.2], 8);
  const layer = L.layerGroup().addTo(map);
  let fitted = false;

  function time(ms) {
    return new Date(ms).toLocaleTimeString(document.body.dataset.lang === "en" ? "en-GB" : "zh-CN", {
      timeZone: tz, hour: "2-digit", minute: "2-digit",
    });
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  function draw(data) {
    layer.clearLayers();
    const rows = [];
    const bounds = [];
    data.trucks.forEach((truck, i) => {
      const color = COLORS[i % COLORS.length];
      const line = truck.track.map(([, lat, lon]) => [lat, lon]);
      bounds.push(...line);
      L.polyline(line, { color, weight: 4, className: "track" }).addTo(layer);
      for (const stop of truck.stops) {
        L.circleMarker([stop.lat_deg, stop.lon_deg], { radius: 5, color: "#555", fillOpacity: 0.8, className: "stop" })
          .bindTooltip(`${T.stopped} ${time(stop.start_ms)}–${time(stop.end_ms)}`).addTo(layer);
      }
      for (const b of truck.breaches) {
        L.circleMarker([b.lat_deg, b.lon_deg], { radius: 8, color: LEVEL[b.level] || LEVEL.warning, fillOpacity: 0.9, className: `breach ${b.level}` })
          .bindTooltip(`${T[b.level] || b.level}: ${b.sensor} · ${time(b.start_ms)}`).addTo(layer);
      }
      const [ts, lat, lon, speed] = truck.latest;
      L.circleMarker([lat, lon], { radius: 10, color, fillColor: "#fff", fillOpacity: 1, weight: 4, className: "truck" })
        .bindTooltip(`${truck.name} · ${time(ts)}${speed === null ? "" : ` · ${speed.toFixed(0)} km/h`}`, { permanent: true, direction: "right" })
        .addTo(layer);
      const row = document.createElement("tr");
      row.dataset.gateway = truck.gateway;
      row.append(
        cell(truck.name),
        cell(time(ts)),
        cell(speed === null ? "—" : `${speed.toFixed(0)} km/h`),
        cell(String(truck.breaches.length)),
      );
      rows.push(row);
    });
    document.querySelector("#trucks tbody").replaceChildren(...rows);
    status.textContent = data.trucks.length ? "" : T.no_trucks;
    if (bounds.length && !fitted) {
      map.fitBounds(bounds, { padding: [30, 30], animate: false });
      fitted = true;
    }
    document.getElementById("map").dataset.trucks = String(data.trucks.length);
  }

  async function load() {
    const day = document.getElementById("map-day").value;
    try {
      const answer = await fetch(`/api/trucks?${new URLSearchParams(day ? { day } : {})}`, { credentials: "same-origin" });
      if (answer.ok) draw(await answer.json());
    } catch (e) { /* the server is restarting: the next poll */ }
  }

  document.getElementById("map-day").addEventListener("change", () => { fitted = false; load(); });
  load();
  setInterval(load, 15000); // live: the trucks move on
})();
