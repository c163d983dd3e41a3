// Batch-1 latency of candidate models on onnxruntime-web (WebAssembly), in interleaved rounds as
// pipeline/measure/timing.py does them; the statistics (ratios, intervals, the decision) stay in Python.
// A browser's clock is coarse (100 µs without cross-origin isolation), so each sample is the mean of
// CALLS_PER_SAMPLE consecutive runs.
import * as ort from "./ort.wasm.min.mjs";
import { sessionOptions } from "./golden.mjs";

const CALLS_PER_SAMPLE = 10;
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

async function sample(run) {
  const start = performance.now();
  for (let i = 0; i < CALLS_PER_SAMPLE; i++) await run();
  return (performance.now() - start) / CALLS_PER_SAMPLE;
}

// candidates: [{label, file, session}] in preference order -> {label: [per-round median ms]}
window.timeCandidates = async (candidates, rounds, perRound, warmup) => {
  ort.env.wasm.wasmPaths = new URL("./", location.href).href;
  ort.env.wasm.numThreads = 1;
  const runs = {};
  for (const { label, file, session: options } of candidates) {
    const session = await ort.InferenceSession.create(file, sessionOptions(options, ["wasm"]));
    const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", new Float32Array(784), [1, 1, 28, 28]) };
    runs[label] = () => session.run(feeds);
    for (let i = 0; i < warmup; i++) await runs[label]();
  }
  const labels = Object.keys(runs);
  const medians = Object.fromEntries(labels.map((label) => [label, []]));
  for (let r = 0; r < rounds; r++) {
    const shift = r % labels.length;
    for (const label of [...labels.slice(shift), ...labels.slice(0, shift)]) {
      const samples = [];
      for (let i = 0; i < perRound; i++) samples.push(await sample(runs[label]));
      medians[label].push(median(samples));
    }
  }
  return medians;
};
window.timingReady = true;
