// facejax studio: what every page shares (requests, the navigation bar, status lines).
"use strict";

const studio = {
  // The page's query parameters (the token travels as a cookie after the first request).
  params: new URLSearchParams(window.location.search),

  async get(path) {
    const response = await fetch(path, {credentials: "same-origin"});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  },

  async post(path, data) {
    const response = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)});
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  },

  status(text) { document.getElementById("status").textContent = text; },

  nav(here) {
    const bar = document.createElement("nav");
    bar.innerHTML = '<span class="title">facejax studio</span>';
    for (const page of ["faces", "masks", "training", "merge"]) {
      const link = document.createElement("a");
      link.href = "/" + page;
      link.textContent = page[0].toUpperCase() + page.slice(1);
      if (page === here) link.className = "here";
      bar.appendChild(link);
    }
    document.body.insertBefore(bar, document.body.firstChild);
  },

  // Fills a <select> with the studio's extraction folders; returns the info.
  async folders(select) {
    const info = await studio.get("/api/info");
    for (const folder of info.folders) {
      const option = document.createElement("option");
      option.value = folder.index;
      option.textContent = folder.path;
      select.appendChild(option);
    }
    const wanted = studio.params.get("folder");
    if (wanted !== null) select.value = wanted;
    return info;
  },

  cropUrl(folder, face) {
    return "/api/crop?folder=" + folder + "&face=" + encodeURIComponent(face);
  },
};
