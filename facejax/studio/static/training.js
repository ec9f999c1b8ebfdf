// The Training page: a run's curves, held-out metrics, latest preview, config and ETA, polled.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 3000;
let previewSeen = -1;

function chart(title, series) {
  const box = document.createElement("div");
  box.className = "chart";
  box.dataset.tag = title;
  const head = document.createElement("h4");
  const last = series[series.length - 1];
  head.textContent = title + ": " + (last[1] === null ? "n/a" : Number(last[1]).toPrecision(4));
  const canvas = document.createElement("canvas");
  canvas.width = 320;
  canvas.height = 150;
  const ctx = canvas.getContext("2d");
  const points = series.filter(([, v]) => v !== null);
  const xs = points.map(([s]) => s), ys = points.map(([, v]) => v);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const px = (s) => 30 + (x1 > x0 ? (s - x0) / (x1 - x0) : 0.5) * (canvas.width - 40);
  const py = (v) => canvas.height - 15 - (y1 > y0 ? (v - y0) / (y1 - y0) : 0.5) *
    (canvas.height - 30);
  ctx.strokeStyle = "#9cf";
  ctx.beginPath();
  points.forEach(([s, v], i) => i ? ctx.lineTo(px(s), py(v)) : ctx.moveTo(px(s), py(v)));
  ctx.stroke();
  ctx.fillStyle = "#aaa";
  ctx.font = "10px sans-serif";
  ctx.fillText(y1.toPrecision(3), 0, 12);
  ctx.fillText(y0.toPrecision(3), 0, canvas.height - 15);
  ctx.fillText("step " + x0 + "…" + x1, 30, canvas.height - 2);
  box.append(head, canvas);
  return box;
}

function metricsTable(history) {
  if (!history.length) return document.createTextNode("none recorded yet (eval_every)");
  const keys = Object.keys(history[history.length - 1]).filter((k) => k !== "step");
  const charts = document.createElement("div");
  charts.className = "charts";
  for (const key of keys) {
    const series = history.filter((h) => key in h).map((h) => [h.step, h[key]]);
    if (series.some(([, v]) => v !== null)) charts.appendChild(chart(key, series));
  }
  return charts;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60);
  return (h ? h + " h " : "") + m + " min";
}

async function refresh() {
  try {
    const run = await studio.get("/api/training");
    $("workdir").textContent = run.workdir;
    $("step").textContent = run.step;
    $("steps").textContent = run.num_steps || "?";
    $("eta").textContent = duration(run.eta_s);
    const tags = Object.keys(run.scalars).sort();
    $("scalars").replaceChildren(...tags.map((t) => chart(t, run.scalars[t])));
    if (!tags.length) $("scalars").textContent = "no scalars yet";
    $("metrics").replaceChildren(metricsTable(run.metrics));
    if (run.preview && run.preview_mtime !== previewSeen) {
      previewSeen = run.preview_mtime;
      $("preview").src = "/api/training/preview?t=" + run.preview_mtime;
    }
    $("config").textContent = JSON.stringify(run.config, null, 1);
    $("config").dataset.loaded = "1";
    studio.status("");
  } catch (err) { studio.status(err.message); }
}

studio.nav("training");
$("every").textContent = POLL_MS / 1000;
refresh();
setInterval(refresh, POLL_MS);
