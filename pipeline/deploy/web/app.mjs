// The web bundle's page: draw a digit, see the model's label and probabilities. Everything runs in the
// browser with onnxruntime-web (WebAssembly), from this folder: serve it with `python -m http.server`.
// The picture is prepared exactly as infer.py prepares an image file (digits.mjs is a byte-identical port
// of digits.py), then normalized with the manifest's scale, mean and std. A drawing that looks like no digit
// (the manifest's `ood` bounds, as infer.py applies them) is flagged "Not a digit?" with the reasons.
import * as ort from "./ort.wasm.min.mjs";
import { NoInk, inkStats, normalize, notADigit, prepare } from "./digits.mjs";
import { compareGolden, readTensor, sessionOptions } from "./golden.mjs";

const pad = document.getElementById("pad");
const ink = pad.getContext("2d", { willReadFrequently: true });
const status = document.getElementById("status");
let manifest, session;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("label").textContent = "–";
  document.getElementById("label").className = "";
  document.getElementById("flag").textContent = "";
  document.getElementById("probs").replaceChildren();
  document.getElementById("seen").getContext("2d").clearRect(0, 0, 28, 28);
}

function softmax(logits) {
  const top = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - top));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}

async function run(x) {
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", x, [x.length / 784, 1, 28, 28]) };
  return Array.from((await session.run(feeds))[session.outputNames[0]].data);
}

// RGBA pixels (as canvas getImageData gives them) -> {label, probabilities, logits, pixels, notADigit}, where
// notADigit lists why the picture looks like no digit ([] when it looks like one).
export async function classify(rgba, height, width) {
  const pixels = prepare(rgba, height, width);
  const logits = await run(normalize(pixels, manifest.preprocessing));
  const probabilities = softmax(logits);
  const best = probabilities.indexOf(Math.max(...probabilities));
  const reasons = notADigit(inkStats(pixels), logits, manifest.ood?.thresholds ?? {});
  return { label: manifest.class_labels[best], probabilities, logits, pixels, notADigit: reasons };
}

function show({ label, probabilities, pixels, notADigit: reasons }) {
  document.getElementById("label").textContent = label;
  document.getElementById("label").className = reasons.length ? "doubtful" : "";
  document.getElementById("flag").textContent = reasons.length ? `Not a digit? ${reasons.join("; ")}` : "";
  const best = manifest.class_labels.indexOf(label);
  document.getElementById("probs").replaceChildren(...probabilities.map((p, i) => {
    const row = document.createElement("div");
    row.className = i === best ? "bar top" : "bar";
    row.innerHTML = `<b>${manifest.class_labels[i]}</b><span><span class="fill" style="width:${(p * 100).toFixed(1)}%">` +
      `</span></span><span>${(p * 100).toFixed(1)} %</span>`;
    return row;
  }));
  const seen = document.getElementById("seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  seen.putImageData(image, 0, 0);
}

async function predictDrawing() {
  const { data } = ink.getImageData(0, 0, pad.width, pad.height);
  try {
    const result = await classify(data, pad.height, pad.width);
    show(result);
    status.textContent = result.notADigit.length ? "That does not look like one digit: Clear, then draw a single digit."
      : "Draw another digit, or Clear.";
  } catch (err) {
    if (!(err instanceof NoInk)) throw err;
    status.textContent = "No ink found: draw a digit.";
  } finally {
    window.digitApp.predictions += 1;  // scripted drawings wait on this
  }
}

let drawing = false;
pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  ink.beginPath();
  ink.moveTo(e.offsetX, e.offsetY);
  ink.lineTo(e.offsetX + 0.01, e.offsetY);
  ink.stroke();
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  ink.lineTo(e.offsetX, e.offsetY);
  ink.stroke();
});
pad.addEventListener("pointerup", () => { drawing = false; predictDrawing(); });
document.getElementById("clear").addEventListener("click", () => { clearPad(); status.textContent = "Draw a digit."; });

// The bundle's own check, as verify.py does it: every listed file's sha256, then the golden outputs.
export async function verify() {
  const bytes = async (name) => new Uint8Array(await (await fetch(name, { cache: "no-store" })).arrayBuffer());
  for (const [name, expected] of Object.entries(manifest.files)) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await bytes(name)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex !== expected) throw new Error(`sha256 mismatch for ${name}: the file was modified after packaging`);
  }
  let samples = 0, agreeing = 0, worst = 0;
  for (const set of manifest.golden.sets) {
    const input = readTensor(await bytes(`${set}/input_0.pb`));
    const expected = readTensor(await bytes(`${set}/output_0.pb`));
    const result = compareGolden(new Float32Array(await run(input.data)), expected, manifest.golden.tolerance);
    if (result.failures.length) throw new Error(`${set}: ${result.failures.join("; ")}`);
    samples += result.rows; agreeing += result.agreeing; worst = Math.max(worst, result.maxAbsDelta);
  }
  let pictures = 0;
  for (const picture of manifest.golden.pictures ?? []) {
    const bitmap = await createImageBitmap(await (await fetch(picture.file)).blob(),
      { premultiplyAlpha: "none", colorSpaceConversion: "none" });
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height);
    const { label, logits } = await classify(data, bitmap.height, bitmap.width);
    const delta = Math.max(...logits.map((v, i) => Math.abs(v - picture.logits[i])));
    if (label !== picture.label || !(delta <= manifest.golden.tolerance.atol)) {
      throw new Error(`${picture.file}: prepared as the manifest says, the model answers ${label} (max |Δ| ` +
        `${delta.toPrecision(3)} from the recorded logits) where ${picture.label} was recorded`);
    }
    pictures += 1;
  }
  return { target: manifest.target.name, golden_pictures: pictures, files_checked: Object.keys(manifest.files).length, providers: ["wasm"],
           onnxruntime: ort.env.versions?.web ?? ort.env.versions?.common ?? "unknown", machine: "wasm32",
           user_agent: navigator.userAgent, golden_sets: manifest.golden.sets.length, golden_samples: samples,
           max_abs_delta: worst, top1_agreement: agreeing / samples };
}

async function start() {
  manifest = await (await fetch("manifest.json", { cache: "no-store" })).json();
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  // Threads need a cross-origin-isolated page (COOP/COEP headers), which a plain static server does not send.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  session = await ort.InferenceSession.create(manifest.model.file, sessionOptions(manifest.target.session, ["wasm"]));
  clearPad();
  ink.strokeStyle = "#000";
  ink.lineWidth = 18;
  ink.lineCap = ink.lineJoin = "round";
  status.textContent = `Ready: ${manifest.model.name} ${manifest.model.version} (${manifest.model.variant}), ` +
    `onnxruntime-web ${ort.env.versions?.web ?? ""} on WebAssembly.`;
  window.digitApp = { classify, verify, predictions: 0, ready: true };
}

start().catch((err) => {
  status.textContent = `Could not start: ${err.message}`;
  status.className = "error";
  window.digitApp = { error: String(err.message ?? err) };
});
