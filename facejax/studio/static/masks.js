// The Masks page: draw include and exclude polygons over a face crop, saved to masks.jsonl.
"use strict";

const $ = (id) => document.getElementById(id);
const COLOURS = {include: "rgba(80,220,80,", exclude: "rgba(240,80,80,"};
const state = {faces: [], labelled: new Set(), face: null, size: 64, polygons: [], open: [],
               image: null};

function kind() { return document.querySelector("input[name=kind]:checked").value; }

function draw() {
  const canvas = $("canvas"), ctx = canvas.getContext("2d");
  const scale = canvas.width / state.size;
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (state.image) ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  const shapes = [...state.polygons.map((p) => [p, true]),
                  [{type: kind(), points: state.open}, false]];
  for (const [poly, closed] of shapes) {
    if (!poly.points.length) continue;
    ctx.beginPath();
    poly.points.forEach(([x, y], i) => i ? ctx.lineTo(x * scale, y * scale)
                                         : ctx.moveTo(x * scale, y * scale));
    if (closed) { ctx.closePath(); ctx.fillStyle = COLOURS[poly.type] + "0.3)"; ctx.fill(); }
    ctx.strokeStyle = COLOURS[poly.type] + "1)";
    ctx.lineWidth = 2;
    ctx.stroke();
    for (const [x, y] of poly.points) ctx.fillRect(x * scale - 2, y * scale - 2, 4, 4);
  }
}

function addPoint(event) {
  // Crop pixels with the origin at the top-left corner of the drawing area (inside the
  // canvas's border), as masks.jsonl keeps them.
  const canvas = $("canvas"), rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left - canvas.clientLeft) * state.size / canvas.clientWidth;
  const y = (event.clientY - rect.top - canvas.clientTop) * state.size / canvas.clientHeight;
  state.open.push([x, y]);
  draw();
}

function closePolygon() {
  if (state.open.length < 3) return studio.status("a polygon needs at least 3 points");
  state.polygons.push({type: kind(), points: state.open});
  state.open = [];
  studio.status(state.polygons.length + " polygon(s), not saved yet");
  draw();
}

function renderList() {
  const list = $("facelist");
  list.replaceChildren(...state.faces.map((face) => {
    const div = document.createElement("div");
    div.textContent = face;
    div.dataset.id = face;
    if (state.labelled.has(face)) div.classList.add("done");
    if (face === state.face) div.classList.add("current");
    div.onclick = () => openFace(face);
    return div;
  }));
  $("labelled").textContent = state.labelled.size;
  $("total").textContent = state.faces.length;
}

async function openFace(face) {
  const folder = $("folder").value;
  const data = await studio.get("/api/masks?folder=" + folder + "&face=" +
                                encodeURIComponent(face));
  state.face = face;
  state.size = data.size;
  state.open = [];
  state.polygons = [];
  if (data.label) {
    const s = data.size / data.label.size;
    state.polygons = data.label.polygons.map((p) => ({
      type: p.type, points: p.points.map(([x, y]) => [x * s, y * s])}));
  }
  const image = new Image();
  image.onload = () => { state.image = image; draw(); $("canvas").dataset.face = face; };
  image.src = studio.cropUrl(folder, face);
  $("current").textContent = face;
  renderList();
  studio.status("");
}

async function save() {
  if (state.open.length) closePolygon();
  try {
    const out = await studio.post("/api/masks", {
      folder: Number($("folder").value), face: state.face, size: state.size,
      polygons: state.polygons});
    if (state.polygons.length) state.labelled.add(state.face);
    else state.labelled.delete(state.face);
    renderList();
    studio.status("saved (" + out.count + " faces labelled)");
  } catch (err) { studio.status(err.message); }
}

function step(delta) {
  const i = state.faces.indexOf(state.face) + delta;
  if (i >= 0 && i < state.faces.length) openFace(state.faces[i]);
}

async function loadFolder() {
  const data = await studio.get("/api/masks?folder=" + $("folder").value);
  state.faces = data.faces;
  state.labelled = new Set(data.labelled);
  const wanted = studio.params.get("face");
  await openFace(wanted && state.faces.includes(wanted) ? wanted : state.faces[0]);
}

async function init() {
  studio.nav("masks");
  await studio.folders($("folder"));
  $("folder").onchange = loadFolder;
  $("canvas").addEventListener("click", addPoint);
  $("close").onclick = closePolygon;
  $("undopoint").onclick = () => { state.open.pop(); draw(); };
  $("clear").onclick = () => { state.open = []; state.polygons = []; draw(); };
  $("save").onclick = save;
  $("prevface").onclick = () => step(-1);
  $("nextface").onclick = () => step(1);
  for (const radio of document.querySelectorAll("input[name=kind]")) radio.onchange = draw;
  document.addEventListener("keydown", (e) => { if (e.key === "Enter") closePolygon(); });
  await loadFolder();
}

init();
