// parity's ONNX Runtime Web client under Node (the ort_web backend): one batch per run.
//   node runner.mjs <onnxruntime-web dir> <model.onnx> <inputs dir> <outputs dir> '<wasm settings JSON>'
// Reads the batch from <inputs dir> (index.json + raw .bin files), runs it on ONNX Runtime Web's wasm
// execution provider, writes the outputs to <outputs dir> the same way; index.json's `client` records what ran
// (versions, the wasm settings in force, the SHA-256 of the model bytes loaded). Errors go to stderr, exit 1.
import { readFile, writeFile, readdir } from "node:fs/promises";
import { join, dirname } from "node:path";
import { pathToFileURL } from "node:url";
import { configure, runBatch, sha256 } from "./tensors.mjs";

async function main() {
  const [ortDir, modelPath, inputsDir, outputsDir, settings] = process.argv.slice(2);
  if (!outputsDir) {
    throw new Error("usage: node runner.mjs <onnxruntime-web dir> <model> <inputs> <outputs> [wasm JSON]");
  }
  const wasm = settings ? JSON.parse(settings) : {};
  const pkg = JSON.parse(await readFile(join(ortDir, "package.json"), "utf8"));
  const ort = await import(pathToFileURL(join(ortDir, pkg.exports["."].node.import)).href);
  configure(ort, wasm);
  const index = JSON.parse(await readFile(join(inputsDir, "index.json"), "utf8"));
  const model = await readFile(modelPath);
  const external = [];
  for (const location of index.external_data || []) {
    external.push({ path: location, data: await readFile(join(dirname(modelPath), location)) });
  }
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: wasm.graph_optimization_level || "all" };
  if (external.length) options.externalData = external;
  const loaded = new Uint8Array(model.buffer, model.byteOffset, model.byteLength);
  // hashed before the session takes the bytes (a proxied session transfers the buffer to its worker)
  const modelSha256 = await sha256(loaded);
  const externalSha256 = Object.fromEntries(
    await Promise.all(external.map(async (e) => [e.path, await sha256(e.data)])));
  const session = await ort.InferenceSession.create(loaded, options);
  const result = await runBatch(ort, session, index, (file) => readFile(join(inputsDir, file)),
                                (index.expected_outputs || []).map((e) => e.name));
  for (const [file, bytes] of Object.entries(result.blobs)) await writeFile(join(outputsDir, file), bytes);
  result.index.client = {
    name: "onnxruntime-web (node)",
    onnxruntime_web: ort.env.versions.web,
    onnxruntime_common: ort.env.versions.common,
    node: process.versions.node,
    v8: process.versions.v8,
    execution_provider: "wasm",
    wasm: { num_threads: ort.env.wasm.numThreads, simd: ort.env.wasm.simd ?? true, proxy: !!ort.env.wasm.proxy },
    model_sha256: modelSha256,
    external_data_sha256: externalSha256,
    run_ms: result.milliseconds,
  };
  await writeFile(join(outputsDir, "index.json"), JSON.stringify(result.index, null, 2) + "\n");
  await session.release();
}

main().then(() => process.exit(0), (error) => {
  // the stack first, the message last: parity's ERROR quotes the last line of stderr
  if (error && error.stack) process.stderr.write(`${error.stack}\n`);
  const message = error && error.message ? error.message : String(error);
  process.stderr.write(`parity ort_web runner: ${message.split("\n").join(" ")}\n`);
  process.exit(1);
});
