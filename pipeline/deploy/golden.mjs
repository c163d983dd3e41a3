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
