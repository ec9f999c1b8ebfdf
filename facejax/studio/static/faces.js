// The Faces page: a sorted, paged grid of an extraction folder's faces; select, delete, undo.
"use strict";

const state = {page: 0, per: 60, total: 0, picked: null, selected: new Set()};
const $ = (id) => document.getElementById(id);

function describe(face, sort) {
  const value = typeof face.value === "number" && sort !== "frame"
    ? " · " + face.value.toFixed(3) : "";
  return face.source + " · frame " + face.frame + value;
}

function card(face, folder, sort) {
  const div = document.createElement("div");
  div.className = "face";
  div.dataset.id = face.id;
  if (state.selected.has(face.id)) div.classList.add("selected");
  if (state.picked === face.id) div.classList.add("picked");
  const img = document.createElement("img");
  img.src = studio.cropUrl(folder, face.id);
  img.alt = face.id;
  img.title = face.id;
  const cap = document.createElement("div");
  cap.className = "cap";
  cap.textContent = describe(face, sort) + (face.masked ? " · masked" : "");
  const tools = document.createElement("div");
  tools.className = "tools";
  const pick = document.createElement("a");
  pick.href = "#";
  pick.className = "pick";
  pick.textContent = "similar";
  pick.title = "sort by similarity to this face";
  pick.onclick = (e) => { e.preventDefault(); e.stopPropagation(); pickFace(face.id); };
  const mask = document.createElement("a");
  mask.href = "/masks?folder=" + folder + "&face=" + encodeURIComponent(face.id);
  mask.textContent = "mask";
  mask.onclick = (e) => e.stopPropagation();
  tools.append(pick, mask);
  div.append(img, cap, tools);
  div.onclick = () => toggle(div, face.id);
  return div;
}

function toggle(div, id) {
  if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
  div.classList.toggle("selected");
  $("count").textContent = state.selected.size;
}

function pickFace(id) {
  state.picked = id;
  $("sort").value = "similar";
  state.page = 0;
  load();
}

async function load() {
  const folder = $("folder").value, sort = $("sort").value;
  const query = new URLSearchParams({folder, sort, page: state.page, per: state.per,
                                     reverse: $("reverse").checked ? "1" : "0"});
  if (state.picked) query.set("picked", state.picked);
  studio.status(sort === "frame" ? "" : "sorting…");
  try {
    const data = await studio.get("/api/faces?" + query);
    state.total = data.total;
    $("note").textContent = data.note;
    const grid = $("grid");
    grid.replaceChildren(...data.faces.map((f) => card(f, folder, sort)));
    const pages = Math.max(1, Math.ceil(data.total / state.per));
    $("pageinfo").textContent = "page " + (state.page + 1) + " of " + pages + " (" +
      data.total + " faces)";
    studio.status("");
    grid.dataset.loaded = sort;
  } catch (err) {
    studio.status(err.message);
  }
}

async function remove() {
  if (!state.selected.size) return studio.status("select faces first (click them)");
  try {
    const out = await studio.post("/api/faces/delete",
                                  {folder: Number($("folder").value),
                                   faces: [...state.selected]});
    state.selected.clear();
    $("count").textContent = 0;
    await load();
    studio.status("moved " + out.deleted + " face(s) to the trash (batch " + out.batch +
                  "); the dataset is prepared again on the next run");
  } catch (err) { studio.status(err.message); }
}

async function undo() {
  try {
    const out = await studio.post("/api/faces/undo", {folder: Number($("folder").value)});
    await load();
    studio.status("restored " + out.restored + " face(s)");
  } catch (err) { studio.status(err.message); }
}

async function init() {
  studio.nav("faces");
  await studio.folders($("folder"));
  const first = await studio.get("/api/faces?per=1&folder=" + $("folder").value);
  for (const [key, label] of Object.entries(first.keys)) {
    const option = document.createElement("option");
    option.value = key;
    option.textContent = label;
    $("sort").appendChild(option);
  }
  for (const id of ["folder", "sort", "reverse"]) {
    $(id).onchange = () => { state.page = 0; load(); };
  }
  $("prev").onclick = () => { if (state.page > 0) { state.page--; load(); } };
  $("next").onclick = () => {
    if ((state.page + 1) * state.per < state.total) { state.page++; load(); }
  };
  $("delete").onclick = remove;
  $("undo").onclick = undo;
  $("clear").onclick = () => { state.selected.clear(); $("count").textContent = 0; load(); };
  await load();
}

init();
