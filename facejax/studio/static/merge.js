// The Merge page: one frame of the clip swapped with the run's model under the chosen convert
// options, rendered again on every change; the options saved for `facejax convert --settings`.
"use strict";

const $ = (id) => document.getElementById(id);
const OPTIONS = ["mask", "erode", "blur", "color", "blend", "smooth"];
let pending = null, rendering = false, renders = 0;

function values() {
  const out = {};
  for (const name of OPTIONS) out[name] = $(name).value;
  return out;
}

async function render() {
  if (rendering) { pending = true; return; }
  rendering = true;
  pending = false;
  const query = new URLSearchParams({index: $("frame").value, ...values()});
  const started = performance.now();
  studio.status("rendering…");
  try {
    const response = await fetch("/api/merge/frame?" + query, {credentials: "same-origin"});
    if (!response.ok) throw new Error((await response.json()).error);
    const blob = await response.blob();
    const old = $("view").src;
    $("view").src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    renders++;
    $("view").dataset.renders = renders;
    $("view").dataset.query = query.toString();
    $("timing").textContent = "rendered in " + Math.round(performance.now() - started) + " ms";
    studio.status("");
  } catch (err) { studio.status(err.message); }
  rendering = false;
  if (pending) render();
}

async function save() {
  try {
    const out = await studio.post("/api/merge/save", values());
    studio.status("saved: facejax convert --settings=" + out.path);
  } catch (err) { studio.status(err.message); }
}

async function init() {
  studio.nav("merge");
  try {
    const info = await studio.get("/api/merge/info");
    $("frame").max = info.frame_count - 1;
    for (const mask of info.masks) {  // xseg and xseg_x_learned where the studio has --xseg_model
      const option = document.createElement("option");
      option.textContent = mask;
      $("mask").appendChild(option);
    }
    const start = Object.assign({}, info.saved || info.defaults);
    // Settings saved with an XSeg mask, opened in a studio without --xseg_model.
    if (!info.masks.includes(start.mask)) start.mask = info.defaults.mask;
    for (const name of OPTIONS) $(name).value = start[name];
    $("clip").textContent = info.clip + " (" + info.frame_count + " frames); settings file: " +
      info.settings_path;
  } catch (err) { studio.status(err.message); return; }
  $("frame").oninput = () => { $("frameno").textContent = $("frame").value; };
  $("frame").onchange = render;
  for (const name of OPTIONS) $(name).onchange = render;
  $("save").onclick = save;
  render();
}

init();
