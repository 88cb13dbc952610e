// Builds the page: copies onnxruntime-web's module and WebAssembly files (the versions package.json
// pins) into vendor/, next to the page, so that it needs no CDN. Run by `npm run build`.
import { copyFileSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, "node_modules", "onnxruntime-web", "dist");
const target = join(here, "vendor");
// The WebAssembly build only (no WebGPU/WebGL): its module, and the runtime it loads.
const files = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"];

mkdirSync(target, { recursive: true });
for (const file of files) {
  copyFileSync(join(source, file), join(target, file));
  console.log(`vendor/${file}: ${(statSync(join(target, file)).size / 1e6).toFixed(1)} MB`);
}
