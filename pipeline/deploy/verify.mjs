#!/usr/bin/env node
// Verify a deployment bundle from Node.js, as verify.py does from Python: every file's sha256, the manifest,
// and the golden outputs, with onnxruntime-node (`ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node`;
// the skip keeps its install script from fetching CUDA libraries).
//   node verify.mjs BUNDLE_DIR [--provider CPUExecutionProvider] [--allow-fallback] [--json]
// Exit 0: verified. 1: the model runs but drifts from the golden outputs. 2: the bundle itself is bad.
// 3: not verified here: the target's provider is not in onnxruntime-node (--allow-fallback checks on the CPU).
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { normalize, prepare } from "./digits.mjs";
import { BundleError, GoldenMismatch, checkGoldenPictures, checkGoldenSets, checkIo, checkSchema, sessionOptions }
  from "./golden.mjs";

const PROVIDERS = { CPUExecutionProvider: "cpu" };  // the only provider onnxruntime-node has on Linux x86-64
class ProviderMissing extends Error {}  // exit 3: not verified here, for want of the provider

function sha256(file) {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function listed(bundle, manifest) {
  for (const [name, expected] of Object.entries(manifest.files).sort()) {
    if (path.isAbsolute(name) || name.split("/").includes("..")) throw new BundleError(`manifest lists an unsafe path ${name}`);
    const file = path.join(bundle, name);
    if (!isFile(file)) throw new BundleError(`missing file ${short(name)} (listed in manifest.json \`files\`)`);
    if (typeof expected !== "string" || sha256(file) !== expected) throw new BundleError(`sha256 mismatch for ${name}: the file was modified after packaging`);
  }
  const present = fs.readdirSync(bundle, { recursive: true })
    .map((name) => name.split(path.sep).join("/"))
    .filter((name) => fs.lstatSync(path.join(bundle, name)).isFile() || fs.lstatSync(path.join(bundle, name)).isSymbolicLink());
  // Written after the manifest by a signing producer (verify.py checks them with --public-key).
  const unlistedOk = new Set(["manifest.json", "model.sig", "provenance.intoto.json"]);
  const unlisted = present.filter((name) => !(name in manifest.files) && !unlistedOk.has(name)).sort();
  if (unlisted.length) throw new BundleError(`unlisted file ${unlisted[0]} in bundle (not in manifest.json)`);
  return Object.keys(manifest.files).length;
}

function isFile(file) {
  try { return fs.statSync(file).isFile(); } catch { return false; }  // a name too long to look up is no file
}

const short = (name) => (name.length <= 80 ? name : `${name.slice(0, 60)}… (${name.length} characters)`);

// The golden check runs on the target's own first provider (or --provider) alone; onnxruntime-node has the CPU EP
// here, so a target for another provider is not verified (exit 3) unless --allow-fallback checks it on the CPU.
async function verify(bundle, provider, allowFallback) {
  const manifestPath = path.join(bundle, "manifest.json");
  if (!fs.existsSync(manifestPath)) throw new BundleError(`no manifest.json in ${bundle}`);
  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
  } catch (err) {
    throw new BundleError(`manifest.json is not valid JSON: ${err.message}`);
  }
  checkSchema(manifest);
  const filesChecked = listed(bundle, manifest);
  const wanted = provider ?? manifest.target.providers[0];
  const name = PROVIDERS[wanted] ? wanted : "CPUExecutionProvider";
  if (name !== wanted && !allowFallback) {
    throw new ProviderMissing(`${wanted} is not in onnxruntime-node here (it has CPUExecutionProvider); ` +
      `--allow-fallback checks on it, and says not verified on ${wanted}`);
  }
  let session;
  try {
    session = await ort.InferenceSession.create(path.join(bundle, manifest.model.file),
      sessionOptions(manifest.target.session ?? {}, [PROVIDERS[name]]));
  } catch (err) {
    throw new BundleError(`onnxruntime-node cannot load ${manifest.model.file}: ${String(err.message).split("\n")[0]}`);
  }
  checkIo(manifest, session);
  const read = async (file) => new Uint8Array(fs.readFileSync(path.join(bundle, file)));
  const run = async (data, dims) => {
    const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", Float32Array.from(data), dims) };
    return (await session.run(feeds))[session.outputNames[0]].data;
  };
  const golden = await checkGoldenSets(manifest, read, run);
  const [height, width] = manifest.io.inputs[0].shape.slice(2);
  const prepared = ({ rgba, height: h, width: w }) => normalize(prepare(rgba, h, w, height, width), manifest.preprocessing);
  golden.golden_pictures = await checkGoldenPictures(manifest, read, run, prepared);
  const signed = fs.existsSync(path.join(bundle, "model.sig"));
  return { target: manifest.target.name, files_checked: filesChecked, providers: [name],
           wanted_provider: wanted, verified_on_provider: name === wanted,
           established: signed ? "signature present, not checked" : "consistent",
           onnxruntime: ort.env.versions?.node ?? ort.env.versions?.common ?? "unknown",
           machine: { x64: "x86_64", arm64: "aarch64" }[process.arch] ?? process.arch, ...golden };
}

const args = process.argv.slice(2);
const json = args.includes("--json");
const provider = args.includes("--provider") ? args[args.indexOf("--provider") + 1] : undefined;
const allowFallback = args.includes("--allow-fallback");
const bundle = args.find((a, i) => !a.startsWith("-") && args[i - 1] !== "--provider");
if (args.includes("--help") || args.includes("-h") || !bundle) {
  console.log("usage: node verify.mjs BUNDLE_DIR [--provider CPUExecutionProvider] [--allow-fallback] [--json]");
  process.exit(bundle ? 0 : 2);
}
try {
  const report = await verify(bundle, provider, allowFallback);
  const anchor = report.established === "consistent"
    ? "nothing here proves who made them: compare the archive with its published .sha256"
    : "check model.sig with verify.py --public-key or `model_signing verify key`";
  console.log(json ? JSON.stringify(report) : `${report.established}: ${report.files_checked} files match ` +
    `manifest.json; ${anchor}\n${report.verified_on_provider ? "verified" : `not verified on ${report.wanted_provider} ` +
    "(--allow-fallback):"} ${report.target}: ${report.golden_samples} golden samples on ` +
    `${report.providers[0]} and ${report.golden_pictures} pictures (onnxruntime-node ${report.onnxruntime}), max |Δ| ` +
    `${report.max_abs_delta.toPrecision(3)}`);
} catch (err) {
  if (err instanceof GoldenMismatch) { console.error(`verification failed: ${err.message}`); process.exit(1); }
  if (err instanceof ProviderMissing) { console.error(`not verified: ${err.message}`); process.exit(3); }
  console.error(`error: ${err instanceof BundleError ? err.message : String(err.message ?? err).split("\n")[0]}`);
  process.exit(2);
}
