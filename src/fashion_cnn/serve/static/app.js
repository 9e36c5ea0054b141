"use strict";
const $ = (id) => document.getElementById(id);

async function showCard() {
  try {
    const card = await (await fetch("/api/model")).json();
    const acc = card.test_accuracy == null ? "not evaluated" : (100 * card.test_accuracy).toFixed(1) + "% test accuracy";
    const weights = card.parameters == null ? "" : `${card.parameters.toLocaleString()} weights, `;
    $("card").textContent = `Model: ${card.recipe || card.model} (${weights}${acc}). Classes: ${card.class_names.join(", ")}.`;
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
  showCam(r, "pending");
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

// The Grad-CAM overlay, or the input image while it comes or where there is none.
function showCam(r, state) {
  const cam = $("cam");
  cam.src = r.gradcam_image || r.input_image;
  cam.title = state === "pending" ? "Grad-CAM: coming" : r.gradcam_error || "";
  cam.dataset.state = state;
}

async function predict(form, explain) {
  const response = await fetch(`/api/predict?top_k=3${explain ? "&explain=true" : ""}`, { method: "POST", body: form });
  return { ok: response.ok, status: response.status, body: await response.json() };
}

let latest = 0; // the upload on show: an earlier upload's late answers are dropped

// The answer first, then its Grad-CAM: that takes longer, and with an ONNX or LiteRT engine
// the server loads the Keras model for it on the first request.
async function classify(blob, name) {
  const upload = ++latest;
  const form = new FormData();
  form.append("files", blob, name || "upload");
  $("answer").textContent = "…";
  let r;
  try {
    const answer = await predict(form, false);
    if (upload !== latest) return;
    if (!answer.ok) return showError(answer.body.error || `Error ${answer.status}`);
    r = answer.body.results[0];
    if (r.error) return showError(r.error);
    showResult(r);
  } catch (e) {
    if (upload === latest) showError("The server could not be reached.");
    return;
  }
  try {
    const explained = await predict(form, true);
    if (upload !== latest) return;
    const e = (explained.ok && explained.body.results[0]) || {};
    if (e.gradcam_image) return showCam({ ...r, gradcam_image: e.gradcam_image }, "done");
    const error = e.gradcam_error || e.error || explained.body.error || `Error ${explained.status}`;
    showCam({ ...r, gradcam_error: error }, "unavailable");
  } catch (e) {
    if (upload === latest) showCam({ ...r, gradcam_error: "The server could not be reached." }, "unavailable");
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
