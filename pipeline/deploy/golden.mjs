// Golden I/O for the JavaScript consumers (verify.mjs in Node, the web page in a browser): the ONNX
// TensorProto reader and the comparison verify.py makes, ported. Needs nothing else.

const DTYPES = { 1: Float32Array, 2: Uint8Array, 3: Int8Array, 6: Int32Array, 7: BigInt64Array, 11: Float64Array };

function varint(bytes, pos) {
  let result = 0, shift = 0;
  for (;;) {
    if (pos >= bytes.length) throw new Error("truncated protobuf");
    const byte = bytes[pos++];
    result += (byte & 0x7f) * 2 ** shift;
    if (!(byte & 0x80)) return [result, pos];
    shift += 7;
  }
}

// TensorProto fields: dims (1), data_type (2), float_data (4), raw_data (9); others are skipped.
export function readTensor(bytes) {
  let pos = 0, dtype = 1, raw = null;
  const dims = [], floats = [];
  while (pos < bytes.length) {
    let key;
    [key, pos] = varint(bytes, pos);
    const field = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) {
      let value;
      [value, pos] = varint(bytes, pos);
      if (field === 1) dims.push(value);
      else if (field === 2) dtype = value;
    } else if (wire === 2) {
      let length;
      [length, pos] = varint(bytes, pos);
      const chunk = bytes.subarray(pos, pos + length);
      pos += length;
      if (field === 1) for (let p = 0; p < chunk.length;) { let v; [v, p] = varint(chunk, p); dims.push(v); }
      else if (field === 9) raw = chunk;
      else if (field === 4) floats.push(...new Float32Array(new Uint8Array(chunk).buffer));
    } else if (wire === 5) pos += 4;
    else if (wire === 1) pos += 8;
    else throw new Error(`not a TensorProto (wire type ${wire})`);
  }
  const Type = DTYPES[dtype];
  if (!Type) throw new Error(`unsupported tensor data type ${dtype}`);
  const data = raw ? new Type(new Uint8Array(raw).buffer) : Type.from(floats);
  const size = dims.reduce((a, b) => a * b, 1);
  if (data.length !== size) throw new Error(`${data.length} values do not fill shape [${dims}]`);
  return { dims, data };
}

// verify.py's check: max |Δ| within atol and, unless the manifest says otherwise, the same top-1 label per row.
export function compareGolden(actual, expected, tolerance) {
  const [rows, cols] = expected.dims;
  let maxAbsDelta = 0, agreeing = 0;
  for (let r = 0; r < rows; r++) {
    let bestA = 0, bestE = 0;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      maxAbsDelta = Math.max(maxAbsDelta, Math.abs(actual[i] - expected.data[i]));
      if (actual[i] > actual[r * cols + bestA]) bestA = c;
      if (expected.data[i] > expected.data[r * cols + bestE]) bestE = c;
    }
    if (bestA === bestE) agreeing++;
  }
  const failures = [];
  if (!(maxAbsDelta <= tolerance.atol)) failures.push(`max |Δ| ${maxAbsDelta.toPrecision(3)} exceeds atol ${tolerance.atol}`);
  if (tolerance.top1_must_match !== false && agreeing !== rows) failures.push("top-1 labels differ from the golden outputs");
  return { rows, maxAbsDelta, agreeing, failures };
}

// The manifest's session options in onnxruntime-common's terms (config entries nest by their dots).
export function sessionOptions(session, executionProviders) {
  const levels = { ORT_DISABLE_ALL: "disabled", ORT_ENABLE_BASIC: "basic", ORT_ENABLE_EXTENDED: "extended",
                   ORT_ENABLE_ALL: "all" };
  const extra = {};
  for (const [key, value] of Object.entries(session.config_entries ?? {})) {
    const parts = key.split(".");
    let node = extra;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts.at(-1)] = String(value);
  }
  return {
    executionProviders, extra,
    graphOptimizationLevel: levels[session.graph_optimization_level ?? "ORT_ENABLE_ALL"],
    executionMode: session.execution_mode === "ORT_PARALLEL" ? "parallel" : "sequential",
    ...(session.intra_op_num_threads ? { intraOpNumThreads: session.intra_op_num_threads } : {}),
  };
}

// ---- The checks every JavaScript consumer makes, ported from contents.py, session.py and golden.py: the same
// fields refused with the same exit codes (BundleError 2, GoldenMismatch 1), naming the same field.
export class BundleError extends Error {}
export class GoldenMismatch extends Error {}

const REQUIRED = { schema: "string", schema_version: "integer", model: "object", target: "object",
  provenance: "object", io: "object", preprocessing: "object", class_labels: "array", golden: "object",
  ood: "object", files: "object", verified_on: "array" };
const NUMBER = "a number", TEXT = "a string", NUMBERS = "a list of numbers", TEXTS = "a list of strings",
  MAPPING = "an object", MAPPINGS = "a list of objects",
  DIMS = "a list of dimensions (whole numbers, or names for free ones)",
  LEVEL = "one of ORT_DISABLE_ALL, ORT_ENABLE_BASIC, ORT_ENABLE_EXTENDED, ORT_ENABLE_ALL",
  MODE = "ORT_SEQUENTIAL or ORT_PARALLEL", THREADS = "a whole number from 0 to 1024";
const SESSION_VALUES = { graph_optimization_level: LEVEL, execution_mode: MODE, intra_op_num_threads: THREADS,
  config_entries: MAPPING };

function kindOf(value) {
  if (Array.isArray(value)) return "array";
  if (value === null) return "null";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

function is(value, wanted) {
  const number = typeof value === "number";
  if (wanted === NUMBER) return number;
  if (wanted === TEXT) return typeof value === "string";
  if (wanted === MAPPING) return kindOf(value) === "object";
  if (wanted === LEVEL || wanted === MODE) {
    return typeof value === "string" && wanted.replace(" or ", ", ").replace("one of ", "").split(", ").includes(value);
  }
  if (wanted === THREADS) return Number.isInteger(value) && value >= 0 && value <= 1024;
  if (wanted === DIMS) {
    return Array.isArray(value) && value.every((d) => typeof d === "string" || (Number.isInteger(d) && d >= 0));
  }
  const item = { [NUMBERS]: NUMBER, [TEXTS]: TEXT, [MAPPINGS]: MAPPING }[wanted];
  return Array.isArray(value) && (value.length > 0 || wanted === MAPPINGS) && value.every((v) => is(v, item));
}

const listed = (value) => (Array.isArray(value) ? value.filter((v) => kindOf(v) === "object") : []);

function values(m) {
  const pre = m.preprocessing, target = m.target, golden = m.golden, ood = m.ood;
  const found = [["preprocessing.scale", pre.scale, NUMBER], ["preprocessing.mean", pre.mean, NUMBERS],
    ["preprocessing.std", pre.std, NUMBERS], ["model.file", m.model.file, TEXT],
    ["target.providers", target.providers, TEXTS], ["target.session", target.session, MAPPING],
    ["target.provider_options", target.provider_options ?? [], MAPPINGS], ["class_labels", m.class_labels, TEXTS],
    ["golden.sets", golden.sets, TEXTS], ["golden.pictures", golden.pictures ?? [], MAPPINGS],
    ["files", m.files, MAPPING], ["ood.thresholds", ood.thresholds, MAPPING], ["io.inputs", m.io.inputs, MAPPINGS],
    ["io.outputs", m.io.outputs, MAPPINGS]];
  listed(golden.pictures).forEach((picture, i) => found.push(
    [`golden.pictures[${i}].file`, picture.file, TEXT], [`golden.pictures[${i}].label`, picture.label, TEXT],
    [`golden.pictures[${i}].logits`, picture.logits, NUMBERS]));
  const session = kindOf(target.session) === "object" ? target.session : {};
  for (const [key, wanted] of Object.entries(SESSION_VALUES)) {
    if (key in session) found.push([`target.session.${key}`, session[key], wanted]);
  }
  const thresholds = kindOf(ood.thresholds) === "object" ? ood.thresholds : {};
  for (const name of Object.keys(thresholds).sort()) found.push([`ood.thresholds.${name}`, thresholds[name], NUMBER]);
  for (const kind of ["inputs", "outputs"]) {
    listed(m.io[kind]).forEach((entry, i) => found.push([`io.${kind}[${i}].name`, entry.name, TEXT],
      [`io.${kind}[${i}].shape`, entry.shape, DIMS], [`io.${kind}[${i}].dtype`, entry.dtype, TEXT]));
  }
  return found;
}

// contents.check_schema: every block a consumer reads is there, and every value it reads has its shape.
export function checkSchema(m) {
  if (kindOf(m) !== "object") throw new BundleError("manifest.json must be a JSON object");
  for (const [key, kind] of Object.entries(REQUIRED)) {
    const actual = kindOf(m[key]);
    if (!(actual === kind || (kind === "number" && actual === "integer"))) {
      throw new BundleError(`manifest.json: \`${key}\` missing or not a ${{ string: "str", integer: "int",
        object: "dict", array: "list" }[kind]}`);
    }
  }
  if (m.schema !== "onnx-deploy-manifest" || m.schema_version !== 1) {
    throw new BundleError(`manifest.json: unsupported schema ${m.schema} v${m.schema_version}`);
  }
  const tolerance = m.golden.tolerance ?? {};
  if (typeof tolerance.atol !== "number" || !Array.isArray(m.golden.sets)) {
    throw new BundleError("manifest.json: golden.sets and golden.tolerance.atol are required");
  }
  for (const [where, value, wanted] of values(m)) {
    if (!is(value, wanted)) {
      throw new BundleError(`manifest.json: \`${where}\` is ${String(JSON.stringify(value)).slice(0, 60)}, not ${wanted}`);
    }
  }
}

// session.check_io: the model takes and returns what the manifest declares (names, element types, shapes; a
// named dimension matches any free one), and one class label per output class. `session` is an
// onnxruntime-common InferenceSession (its inputMetadata/outputMetadata).
const DTYPE_NAMES = { float32: "float", float16: "float16", float64: "double", int8: "int8", uint8: "uint8",
  int32: "int32", int64: "int64", bool: "bool" };
export function checkIo(m, session) {
  for (const [kind, actual] of [["inputs", session.inputMetadata], ["outputs", session.outputMetadata]]) {
    const declared = m.io[kind];
    if (declared.length !== actual.length) {
      throw new BundleError(`manifest io.${kind} declares ${declared.length} but the model has ${actual.length}`);
    }
    declared.forEach((entry, i) => {
      const arg = actual[i];
      const found = { name: arg.name, dtype: DTYPE_NAMES[arg.type] ?? arg.type,
        shape: (arg.shape ?? []).map((d) => (typeof d === "number" && d >= 0 ? d : "?")) };
      const wanted = { ...entry, shape: entry.shape.map((d) => (typeof d === "number" ? d : "?")) };
      for (const field of ["name", "dtype", "shape"]) {
        if (JSON.stringify(wanted[field]) !== JSON.stringify(found[field])) {
          throw new BundleError(`manifest io.${kind}[${i}].${field} is ${JSON.stringify(entry[field])} but the ` +
            `model's is ${JSON.stringify(found[field])}`);
        }
      }
    });
  }
  const classes = session.outputMetadata[0].shape?.at(-1);
  if (typeof classes === "number" && classes > 0 && m.class_labels.length !== classes) {
    throw new BundleError(`manifest class_labels has ${m.class_labels.length} labels but the model has ${classes} classes`);
  }
}

// digits.read_netpbm: a binary PGM (P5), PPM (P6) or PAM (P7) with maxval 255 -> {rgba, height, width}.
const NETPBM_DEPTHS = { GRAYSCALE: 1, GRAYSCALE_ALPHA: 2, RGB: 3, RGB_ALPHA: 4 };
const MAX_SIDE = 4096;
export function readNetpbm(bytes) {
  const text = (from, to) => String.fromCharCode(...bytes.subarray(from, to));
  const whole = (value) => {
    const t = String(value ?? "").trim();
    if (!/^[0-9]{1,6}$/.test(t)) throw new Error(`netpbm header field ${JSON.stringify(t.slice(0, 20))} is not a whole number`);
    return Number(t);
  };
  const magic = text(0, 2);
  let width, height, maxval, depth, pos;
  if (magic === "P5" || magic === "P6") {
    const tokens = [];
    pos = 2;
    const space = (b) => b === 32 || (b >= 9 && b <= 13);
    while (tokens.length < 3) {
      while (pos < bytes.length && space(bytes[pos])) pos++;
      if (bytes[pos] === 35) { while (pos < bytes.length && bytes[pos] !== 10) pos++; continue; }
      const start = pos;
      while (pos < bytes.length && !space(bytes[pos])) pos++;
      if (start === pos) throw new Error("netpbm header ends early");
      tokens.push(text(start, pos));
    }
    [width, height, maxval] = tokens.map(whole);
    depth = magic === "P5" ? 1 : 3;
    pos += 1;
  } else if (magic === "P7") {
    let end = -1;
    for (let i = 0; i + 7 <= bytes.length && i < 4096; i++) if (text(i, i + 7) === "ENDHDR\n") { end = i; break; }
    if (end < 0) throw new Error("PAM header without ENDHDR");
    const tags = {};
    for (const line of text(3, end).split("\n")) {
      const match = /^\s*(\S+)\s+(.*\S)\s*$/.exec(line);
      if (match && !line.startsWith("#")) tags[match[1]] = match[2];
    }
    [width, height, maxval] = ["WIDTH", "HEIGHT", "MAXVAL"].map((k) => whole(tags[k]));
    depth = NETPBM_DEPTHS[(tags.TUPLTYPE ?? "").trim()] ?? 0;
    if (depth === 0 || whole(tags.DEPTH) !== depth) {
      throw new Error(`PAM TUPLTYPE/DEPTH ${tags.TUPLTYPE}/${tags.DEPTH} is not one of ${Object.keys(NETPBM_DEPTHS).join(", ")}`);
    }
    pos = end + 7;
  } else {
    throw new Error("not a binary netpbm picture (P5, P6 or P7)");
  }
  if (!(width > 0 && width <= MAX_SIDE && height > 0 && height <= MAX_SIDE) || maxval !== 255) {
    throw new Error(`${width}x${height} with maxval ${maxval}: wanted 1 to ${MAX_SIDE} pixels a side, maxval 255`);
  }
  const size = width * height * depth;
  if (bytes.length - pos !== size) {
    throw new Error(`${bytes.length - pos} bytes of pixels where ${width}x${height}x${depth} = ${size} belong`);
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const s = pos + i * depth;
    const [r, g, b] = depth < 3 ? [bytes[s], bytes[s], bytes[s]] : [bytes[s], bytes[s + 1], bytes[s + 2]];
    rgba.set([r, g, b, depth === 2 || depth === 4 ? bytes[s + depth - 1] : 255], 4 * i);
  }
  return { rgba, height, width };
}

// golden.check_golden: every golden set on the opened session. `read(name)` gives a file's bytes; `run(data,
// dims)` the model's first output (a Float32Array) for a float32 input.
export async function checkGoldenSets(m, read, run) {
  let samples = 0, agreeing = 0, worst = 0;
  for (const set of m.golden.sets) {
    let input, expected;
    try {
      input = readTensor(await read(`${set}/input_0.pb`));
      expected = readTensor(await read(`${set}/output_0.pb`));
    } catch (err) {
      throw err instanceof BundleError ? err : new BundleError(`${set}: ${err.message}`);
    }
    const output = await run(input.data, input.dims);
    if (output.length !== expected.data.length) throw new GoldenMismatch(`${set}: output shape differs from golden`);
    const result = compareGolden(output, expected, m.golden.tolerance);
    if (result.failures.length) throw new GoldenMismatch(`${set}: ${result.failures.join("; ")}`);
    samples += result.rows; agreeing += result.agreeing; worst = Math.max(worst, result.maxAbsDelta);
  }
  return { golden_sets: m.golden.sets.length, golden_samples: samples, max_abs_delta: worst,
           top1_agreement: agreeing / samples };
}

// golden.check_golden_pictures: each picture, decoded here and prepared by digits.mjs with the manifest's
// preprocessing, gives the recorded logits (within atol) and, through class_labels, the recorded label.
export async function checkGoldenPictures(m, read, run, prepared) {
  const atol = m.golden.tolerance.atol;
  for (const picture of m.golden.pictures ?? []) {
    let decoded;
    try {
      decoded = readNetpbm(await read(picture.file));
    } catch (err) {
      throw new BundleError(`golden picture ${picture.file}: ${err.message}`);
    }
    let x;
    try {
      x = prepared(decoded);
    } catch (err) {
      throw new GoldenMismatch(`${picture.file}: the bundle's preparation refuses it: ${err.message}`);
    }
    const logits = Array.from(await run(x, [1, 1, 28, 28]));
    const best = logits.indexOf(Math.max(...logits));
    const label = m.class_labels[best];
    const delta = Math.max(...logits.map((v, i) => Math.abs(v - picture.logits[i])));
    if (label !== picture.label || !(delta <= atol)) {
      throw new GoldenMismatch(`${picture.file}: prepared as the manifest says, the model answers ${label} (max |Δ| ` +
        `${delta.toPrecision(3)} from the recorded logits, atol ${atol}) where ${picture.label} was recorded: ` +
        "preprocessing, class_labels or the preparation code changed");
    }
  }
  return (m.golden.pictures ?? []).length;
}
