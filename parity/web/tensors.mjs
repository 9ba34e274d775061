// parity's tensor exchange for ONNX Runtime Web, shared by the Node runner (runner.mjs) and the browser page
// (page.html). A batch is a directory with index.json (parity.tensors/v1, tensor_format "raw": every input's
// name, file, dtype and shape) and one little-endian, C-order .bin file per input; the client writes the same
// for its outputs. Nothing here touches files or the network: the callers hand in bytes and take bytes back.

const ARRAYS = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int8: Int8Array, int16: Int16Array, int32: Int32Array, int64: BigInt64Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array, bool: Uint8Array,
};

export const FORMAT = "parity.tensors/v1";

// An ort.Tensor from an index entry and the file's bytes (copied: a view must start at an aligned offset).
export function toTensor(ort, entry, bytes) {
  const Kind = ARRAYS[entry.dtype];
  if (!Kind) throw new Error(`input ${entry.name}: ONNX Runtime Web takes no ${entry.dtype} tensors`);
  const count = entry.shape.reduce((a, b) => a * b, 1);
  if (bytes.byteLength !== count * Kind.BYTES_PER_ELEMENT) {
    throw new Error(`input ${entry.name}: ${entry.file} holds ${bytes.byteLength} bytes; ` +
                    `${entry.dtype}[${entry.shape}] needs ${count * Kind.BYTES_PER_ELEMENT}`);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  return new ort.Tensor(entry.dtype, new Kind(copy.buffer), entry.shape);
}

// The raw bytes of an output tensor (a Float16Array, where the runtime has one, gives the same bits).
export function tensorBytes(tensor) {
  const data = tensor.data;
  if (typeof data === "string" || Array.isArray(data)) {
    throw new Error(`an output of type ${tensor.type} has no raw bytes`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// A safe file name per output name (ONNX names may hold '/', ':' ...), unique case-insensitively.
export function fileNames(names) {
  const used = new Set();
  const out = {};
  for (const name of names) {
    const stem = (name.replace(/[^A-Za-z0-9_.+-]/g, "_").replace(/^\.+/, "") || "_").slice(0, 100);
    let candidate = stem;
    for (let n = 2; used.has(candidate.toLowerCase()); n++) candidate = `${stem}_${n}`;
    used.add(candidate.toLowerCase());
    out[name] = candidate + ".bin";
  }
  return out;
}

// Hex SHA-256 of bytes, with the Web Crypto API both Node 20 and browsers have.
export async function sha256(bytes) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Apply the wasm settings parity's config names (before the first session: ONNX Runtime reads them once).
export function configure(ort, wasm) {
  if (wasm.num_threads !== undefined && wasm.num_threads !== null) ort.env.wasm.numThreads = wasm.num_threads;
  if (wasm.simd !== undefined && wasm.simd !== null) ort.env.wasm.simd = wasm.simd;
  if (wasm.proxy !== undefined && wasm.proxy !== null) ort.env.wasm.proxy = wasm.proxy;
  ort.env.logLevel = "error";
}

// Run one batch: `index` is the inputs' index.json, `read(file)` gives a file's bytes. Returns the outputs'
// index (the outputs it lists in `order`, or every output of the graph) and the bytes of each file.
export async function runBatch(ort, session, index, read, order) {
  const feeds = {};
  for (const entry of index.inputs) feeds[entry.name] = toTensor(ort, entry, await read(entry.file));
  const graph = session.outputNames;
  const names = order && order.length ? order : graph;
  let fetched = names;
  if (names.some((n) => !graph.includes(n))) {  // names lost in export: matched by position, as parity does
    if (names.length !== graph.length) {
      throw new Error(`the graph's outputs [${graph}] do not match the expected [${names}]`);
    }
    fetched = graph;
  }
  const start = performance.now();
  const results = await session.run(feeds, fetched);
  const milliseconds = performance.now() - start;
  const files = fileNames(names);
  const entries = [];
  const blobs = {};
  for (const [i, name] of names.entries()) {
    const tensor = results[fetched[i]];
    if (!tensor) throw new Error(`ONNX Runtime Web returned no output ${fetched[i]}`);
    blobs[files[name]] = tensorBytes(tensor);
    entries.push({ name, file: files[name], dtype: tensor.type, shape: Array.from(tensor.dims) });
  }
  return { index: { format: FORMAT, tensor_format: "raw", inputs: [], outputs: entries }, blobs, milliseconds };
}
