// The web bundle's page: draw a digit, see the model's label and probabilities. Everything runs in the
// browser with onnxruntime-web (WebAssembly), from this folder: serve it with `python -m http.server`.
// The picture is prepared exactly as infer.py prepares an image file (digits.mjs is a byte-identical port
// of digits.py), then normalized with the manifest's scale, mean and std. A drawing that looks like no digit
// (the manifest's `ood` bounds, as infer.py applies them) is flagged "Not a digit?" with the reasons.
import * as ort from "./ort.wasm.min.mjs";
import { NoInk, inkStats, normalize, notADigit, prepare } from "./digits.mjs";
import { BundleError, GoldenMismatch, checkGoldenPictures, checkGoldenSets, checkIo, checkSchema, sessionOptions }
  from "./golden.mjs";

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

async function run(x, dims = [x.length / 784, 1, 28, 28]) {
  const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", Float32Array.from(x), dims) };
  return Array.from((await session.run(feeds))[session.outputNames[0]].data);
}

// RGBA pixels (as canvas getImageData gives them) -> {label, probabilities, logits, pixels, notADigit}, where
// notADigit lists why the picture looks like no digit ([] when it looks like one).
export async function classify(rgba, height, width) {
  const pixels = prepare(rgba, height, width);
  const logits = await run(normalize(pixels, manifest.preprocessing));
  const probabilities = softmax(logits);
  const best = probabilities.indexOf(Math.max(...probabilities));
  const reasons = notADigit(inkStats(pixels), logits, manifest.ood.thresholds);
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

const bytes = async (name) => {
  const response = await fetch(name, { cache: "no-store" });
  if (!response.ok) throw new BundleError(`missing file ${name} (listed in manifest.json \`files\`)`);
  return new Uint8Array(await response.arrayBuffer());
};

// The bundle's own check, as verify.py makes it: the manifest's schema, every listed file's sha256 (a static
// server lists no folder, so a file added to the bundle is not seen here), the model's inputs and outputs, the
// golden outputs and the golden pictures through digits.mjs. Throws BundleError or GoldenMismatch.
export async function verify() {
  const text = await (await fetch("manifest.json", { cache: "no-store" })).text();
  try {
    manifest = JSON.parse(text);
  } catch (err) {
    throw new BundleError(`manifest.json is not valid JSON: ${err.message}`);
  }
  checkSchema(manifest);
  for (const [name, expected] of Object.entries(manifest.files)) {
    if (name.startsWith("/") || name.split("/").includes("..")) throw new BundleError(`manifest lists an unsafe path ${name}`);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await bytes(name)));
    const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
    if (hex !== expected) throw new BundleError(`sha256 mismatch for ${name}: the file was modified after packaging`);
  }
  try {
    session = await ort.InferenceSession.create(manifest.model.file, sessionOptions(manifest.target.session, ["wasm"]));
  } catch (err) {
    throw new BundleError(`onnxruntime-web cannot load ${manifest.model.file}: ${String(err.message).split("\n")[0]}`);
  }
  checkIo(manifest, session);
  const golden = await checkGoldenSets(manifest, bytes, (data, dims) => run(data, dims));
  const [height, width] = manifest.io.inputs[0].shape.slice(2);
  const prepared = ({ rgba, height: h, width: w }) => normalize(prepare(rgba, h, w, height, width), manifest.preprocessing);
  golden.golden_pictures = await checkGoldenPictures(manifest, bytes, (data, dims) => run(data, dims), prepared);
  return { target: manifest.target.name, files_checked: Object.keys(manifest.files).length, providers: ["wasm"],
           onnxruntime: ort.env.versions?.web ?? ort.env.versions?.common ?? "unknown", machine: "wasm32",
           user_agent: navigator.userAgent, ...golden };
}

// verify() as a command line would end: exit 0, 1 (GoldenMismatch) or 2 (BundleError, anything else) and the
// line verify.py would print.
export async function check() {
  try {
    return { exit: 0, report: await verify() };
  } catch (err) {
    if (err instanceof GoldenMismatch) return { exit: 1, message: `verification failed: ${err.message}` };
    return { exit: 2, message: `error: ${String(err.message ?? err).split("\n")[0]}` };
  }
}

async function start() {
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  // Threads need a cross-origin-isolated page (COOP/COEP headers), which a plain static server does not send.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const verdict = await check();  // the page answers nothing for a bundle that fails its own check
  if (verdict.exit !== 0) {
    status.textContent = `This bundle fails its check, so the page does not classify: ${verdict.message}`;
    status.className = "error";
    window.digitApp = { verify, check, verdict, ready: true };
    return;
  }
  clearPad();
  ink.strokeStyle = "#000";
  ink.lineWidth = 18;
  ink.lineCap = ink.lineJoin = "round";
  status.textContent = `Ready: ${manifest.model.name} ${manifest.model.version} (${manifest.model.variant}), ` +
    `onnxruntime-web ${ort.env.versions?.web ?? ""} on WebAssembly; the bundle passed its check.`;
  window.digitApp = { classify, verify, check, verdict, predictions: 0, ready: true };
}

start().catch((err) => {
  status.textContent = `Could not start: ${err.message}`;
  status.className = "error";
  window.digitApp = { error: String(err.message ?? err) };
});
