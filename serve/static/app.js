// The page: one POST /v1/tags per chosen photo (multipart, field "image"); no other script, font or style.
"use strict";

const results = document.getElementById("results");
const statusLine = document.getElementById("status");
const keyInput = document.getElementById("api-key");
const KEY_STORE = "hashtag-api-key";

keyInput.value = localStorage.getItem(KEY_STORE) || "";
keyInput.addEventListener("change", () => localStorage.setItem(KEY_STORE, keyInput.value));

function hashtagOf(tag) {
  return "#" + tag.replace(/ /g, "");
}

function query() {
  const params = new URLSearchParams();
  const threshold = document.getElementById("threshold").value;
  const topK = document.getElementById("top-k").value;
  if (threshold !== "") params.set("threshold", threshold);
  if (topK !== "") params.set("top_k", topK);
  const text = params.toString();
  return text ? "?" + text : "";
}

async function copyText(text, button) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {  // plain http on a LAN address: the old way still works
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "Copied";
  } catch (err) {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function cell(row, text, className) {
  const td = document.createElement(row.parentElement.tagName === "THEAD" ? "th" : "td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
}

function showScores(table, record) {
  const columns = [["ensemble", record]].concat(Object.entries(record.models));
  const head = table.tHead.insertRow();
  cell(head, "tag");
  columns.forEach(([name]) => cell(head, name));
  const tags = Object.keys(record.scores).sort((a, b) => record.scores[b] - record.scores[a]);
  for (const tag of tags) {
    const row = table.tBodies[0].insertRow();
    cell(row, tag);
    for (const [, part] of columns) {
      cell(row, part.scores[tag].toFixed(2), part.hashtags.includes(hashtagOf(tag)) ? "chosen" : "");
    }
  }
  table.hidden = false;
}

function show(card, record) {
  const state = card.querySelector(".state");
  if (record.error) {
    state.textContent = record.error;
    state.classList.add("error");
    return;
  }
  const text = record.hashtags.join(" ");
  state.hidden = true;
  card.querySelector(".hashtags").textContent = text || "(no hashtag above threshold)";
  const button = card.querySelector(".copy");
  button.disabled = !text;
  button.addEventListener("click", () => copyText(text, button));
  card.querySelector(".tags-row").hidden = false;
  showScores(card.querySelector(".scores"), record);
}

async function tag(file, card) {
  const form = new FormData();
  form.append("image", file, file.name);
  const headers = keyInput.value ? { Authorization: "Bearer " + keyInput.value } : {};
  try {
    const response = await fetch("/v1/tags" + query(), { method: "POST", body: form, headers });
    const answer = await response.json();
    show(card, response.ok ? answer.results[0] : { error: answer.error || response.statusText });
  } catch (err) {
    show(card, { error: "no answer from the server (" + err.message + ")" });
  }
  card.dataset.state = "done";
}

async function tagAll(files) {
  const images = Array.from(files);
  statusLine.textContent = images.length ? `Tagging ${images.length} photo(s)…` : "";
  const jobs = images.map((file) => {
    const card = document.getElementById("card").content.firstElementChild.cloneNode(true);
    card.dataset.name = file.name;
    card.querySelector(".name").textContent = file.name;
    const thumb = card.querySelector(".thumb");
    thumb.src = URL.createObjectURL(file);
    thumb.alt = file.name;
    results.append(card);
    return tag(file, card);
  });
  await Promise.all(jobs);
  statusLine.textContent = images.length ? `Tagged ${images.length} photo(s).` : "";
}

const input = document.getElementById("files");
input.addEventListener("change", () => { tagAll(input.files); input.value = ""; });

const drop = document.getElementById("drop");
["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  tagAll(event.dataTransfer.files);
});
