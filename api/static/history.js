"use strict";
// History charts (docs/design-history.md): the series of #chart-spec drawn with dygraphs
// from /api/series. Each point is a reading, or a bucket's min / mean / max drawn as a
// band around the mean (an excursion shorter than a bucket keeps its height); gaps break
// the line; the profile's limits and the sensor's excursions are shaded under it.
// Presets and a custom range choose the range; drag to zoom, shift-drag to pan,
// double-click to reset: each new range is fetched again, finer.
(function () {
  const spec = JSON.parse(document.getElementById("chart-spec").textContent);
  const T = JSON.parse(document.getElementById("words").textContent);
  const tz = document.body.dataset.tz || "Asia/Shanghai";
  const chart = document.getElementById("chart");
  const status = document.getElementById("chart-status");
  const HOUR = 3600000;
  const COLORS = ["#1f6fb2", "#2e9e57", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#c0392b", "#2c3e50"];
  const LEVEL = { warning: "rgba(240, 140, 0, 0.16)", critical: "rgba(220, 30, 50, 0.16)" };
  let graph = null;
  let shown = null; // {from, to}: the range on screen
  let results = [];
  let loading = 0;

  // the county's clock on the axis: times are shifted by the zone's offset, drawn as UTC
  function offset(ms) {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }).formatToParts(new Date(ms));
    const get = (type) => Number(parts.find((p) => p.type === type).value);
    const wall = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
    return wall - (ms - (ms % 1000));
  }

  const zh = document.body.dataset.lang !== "en";
  function minutes(ms) {
    const [n, unit] = ms >= 86400000 ? [ms / 86400000, zh ? "天" : "d"]
      : ms >= HOUR ? [ms / HOUR, zh ? "小时" : "h"] : [ms / 60000, zh ? "分钟" : "min"];
    return zh ? `${n}${unit}` : `${n} ${unit}`;
  }

  async function fetchSeries(s, from, to) {
    const lo = Math.max(from, s.from_ms || from);
    const hi = Math.min(to, s.to_ms || to);
    if (hi <= lo) return { series: s, rows: [], bucket_ms: 0, excursions: [], limits: null };
    const points = Math.max(50, Math.min(2000, Math.round(chart.clientWidth / 2)));
    const query = new URLSearchParams({ gateway: s.gateway, sensor: s.sensor, from_ms: lo, to_ms: hi, points });
    const answer = await fetch(`/api/series?${query}`, { credentials: "same-origin" });
    if (!answer.ok) throw new Error(`${s.sensor}: ${answer.status}`);
    return { series: s, ...(await answer.json()) };
  }

  // one table for dygraphs: x values of every series, a [min, mean, max] per series or
  // null where that series has no point at that x; a gap is NaN (it breaks the line
  // even where the points of other series are joined)
  function table(found, shift) {
    const byX = new Map();
    found.forEach((r, i) => {
      for (const [x, lo, mean, hi] of r.rows) {
        if (!byX.has(x)) byX.set(x, new Array(found.length).fill(null));
        byX.get(x)[i] = mean === null ? [NaN, NaN, NaN] : [lo, mean, hi];
      }
    });
    return [...byX.keys()].sort((a, b) => a - b).map((x) => [new Date(x + shift), ...byX.get(x)]);
  }

  function shade(canvas, area, g) {
    const shift = offset(shown.from);
    for (const r of results) {
      for (const e of r.excursions || []) {
        const left = g.toDomXCoord(e.start_ms + shift);
        const right = g.toDomXCoord((e.end_ms || shown.to) + shift);
        canvas.fillStyle = LEVEL[e.level] || LEVEL.warning;
        canvas.fillRect(left, area.y, Math.max(right - left, 2), area.h);
      }
    }
    const limits = (results.find((r) => r.limits) || {}).limits;
    if (!limits) return;
    const band = (from, to, color) => {
      if (from === null || from === undefined) return;
      const top = g.toDomYCoord(to === null || to === undefined ? g.yAxisRange()[1] : to);
      const bottom = g.toDomYCoord(from);
      canvas.fillStyle = color;
      canvas.fillRect(area.x, Math.min(top, bottom), area.w, Math.abs(bottom - top));
    };
    const [yLo, yHi] = g.yAxisRange();
    band(limits.warning_high_c, limits.critical_high_c, LEVEL.warning);
    band(limits.critical_high_c, null, LEVEL.critical);
    if (limits.warning_low_c !== null && limits.warning_low_c !== undefined) {
      band(limits.critical_low_c === null || limits.critical_low_c === undefined ? yLo : limits.critical_low_c, limits.warning_low_c, LEVEL.warning);
    }
    if (limits.critical_low_c !== null && limits.critical_low_c !== undefined) band(yLo, limits.critical_low_c, LEVEL.critical);
    void yHi;
  }

  async function load(from, to) {
    shown = { from, to };
    const mine = ++loading;
    chart.dataset.loading = "true";
    let found;
    try {
      found = await Promise.all(spec.series.map((s) => fetchSeries(s, from, to)));
    } catch (e) {
      status.textContent = String(e.message || e);
      return;
    }
    if (mine !== loading) return; // a newer range was asked meanwhile
    results = found;
    draw(from, to);
    links(from, to);
    chart.dataset.loading = "false";
  }

  function draw(from, to) {
    const shift = offset(from);
    const data = table(results, shift);
    const widths = results.map((r) => r.bucket_ms);
    const width = Math.max(0, ...widths);
    chart.dataset.bucketMs = String(width);
    chart.dataset.fromMs = String(from);
    chart.dataset.toMs = String(to);
    const calibrated = results.some((r) => r.calibrated) ? ` · ${T.values_calibrated}` : "";
    const rolled = results.some((r) => r.rollups_only) ? ` · ${T.rollups_only}` : "";
    status.textContent = data.length === 0
      ? T.no_data
      : (width ? `${T.bucket_of} ${minutes(width)}` : T.each_reading) + calibrated + rolled;
    if (data.length === 0) data.push([new Date(from + shift), ...results.map(() => null)]);
    const options = {
      file: data,
      labels: ["time", ...results.map((r) => r.series.label)],
      customBars: true,
      fillAlpha: 0.35, // the min–max band: an excursion inside a bucket must be seen
      connectSeparatedPoints: true,
      labelsUTC: true,
      dateWindow: [from + shift, to + shift],
      colors: COLORS,
      ylabel: "°C",
      legend: "always",
      labelsSeparateLines: true,
      animatedZooms: false,
      underlayCallback: shade,
      zoomCallback: (lo, hi) => {
        const s = offset(lo);
        load(Math.round(lo - s), Math.round(hi - s));
      },
    };
    if (graph === null) {
      graph = new window.Dygraph(chart, data, options);
      chart.chart = graph; // for the tests: the drawn chart itself
    } else {
      graph.updateOptions(options);
    }
  }

  function links(from, to) {
    const list = document.getElementById("chart-csv");
    list.replaceChildren(...spec.series.map((s) => {
      const item = document.createElement("li");
      const a = document.createElement("a");
      const lo = Math.max(from, s.from_ms || from);
      const hi = Math.min(to, s.to_ms || to);
      a.href = `/api/series.csv?${new URLSearchParams({ gateway: s.gateway, sensor: s.sensor, from_ms: lo, to_ms: hi })}`;
      a.textContent = `${T.csv_of_range}: ${s.label}`;
      item.append(a);
      return item;
    }));
  }

  function end() { return spec.to_ms || Date.now(); }

  // datetime-local inputs are the county's wall clock
  function toInput(ms) { return new Date(ms + offset(ms)).toISOString().slice(0, 16); }
  function fromInput(text) {
    const wall = Date.parse(`${text}:00Z`);
    return wall - offset(wall);
  }

  if (typeof window.Dygraph !== "function") {
    status.textContent = T.no_chart_lib;
    return;
  }
  for (const button of document.querySelectorAll("#chart-range [data-preset]")) {
    button.addEventListener("click", () => {
      const to = end();
      load(to - Number(button.dataset.preset), to);
    });
  }
  document.getElementById("chart-show").addEventListener("click", () => {
    const from = document.querySelector('#chart-range input[name="from"]').value;
    const to = document.querySelector('#chart-range input[name="to"]').value;
    if (from && to && fromInput(to) > fromInput(from)) load(fromInput(from), fromInput(to));
  });
  const to = end();
  const from = spec.from_ms || to - 24 * HOUR;
  document.querySelector('#chart-range input[name="from"]').value = toInput(from);
  document.querySelector('#chart-range input[name="to"]').value = toInput(to);
  load(from, to);
})();
