"use strict";
const $ = (id) => document.getElementById(id);

async function showCard() {
  try {
    const card = await (await fetch("/api/model")).json();
    const acc = card.test_accuracy == null ? "not evaluated" : (100 * card.test_accuracy).toFixed(1) + "% test accuracy";
    $("card").textContent = `Model: ${card.recipe || card.model} (${card.parameters.toLocaleString()} weights, ${acc}). Classes: ${card.class_names.join(", ")}.`;
  } catch (e) {
    $("card").textContent = "Could not load the model card.";
  }
}

async function showSamples() {
  const samples = await (await fetch("/api/samples")).json();
  if (!samples.length) { $("samples-section").hidden = true; return; }
  for (const s of samples) {
    const img = document.createElement("img");
    img.src = s.image;
    img.alt = img.title = `test image #${s.index} (${s.label})`;
    img.addEventListener("click", async () => classify(await (await fetch(s.image)).blob(), `sample-${s.index}.png`));
    $("samples").appendChild(img);
  }
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("result").hidden = true;
}

function showResult(r) {
  $("error").hidden = true;
  $("result").hidden = false;
  $("seen").src = r.input_image;
  $("cam").src = r.gradcam_image || r.input_image;
  const answer = $("answer");
  answer.textContent = r.unsure ? "Unsure" : r.label;
  answer.className = r.unsure ? "unsure" : "";
  answer.dataset.label = r.label;
  $("unsure-note").hidden = !r.unsure;
  const bars = $("bars");
  bars.replaceChildren();
  for (const p of r.predictions) {
    const li = document.createElement("li");
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.max(2, Math.round(200 * p.probability)) + "px";
    li.append(bar, `${p.label} ${(100 * p.probability).toFixed(1)}%`);
    bars.appendChild(li);
  }
}

async function classify(blob, name) {
  const form = new FormData();
  form.append("files", blob, name || "upload");
  $("answer").textContent = "…";
  try {
    const response = await fetch("/api/predict?top_k=3&explain=true", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) return showError(body.error || `Error ${response.status}`);
    const r = body.results[0];
    if (r.error) return showError(r.error);
    showResult(r);
  } catch (e) {
    showError("The server could not be reached.");
  }
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) classify(f, f.name);
});
$("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) classify(f, f.name); });
document.addEventListener("paste", (e) => {
  const item = [...e.clipboardData.items].find((i) => i.type.startsWith("image/"));
  if (item) classify(item.getAsFile(), "pasted.png");
});
showCard();
showSamples();
