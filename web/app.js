// The phone page: loads a shared run's web files, then scores the faces of a photo from the camera or
// the gallery with notebook 05's steps, in this page. The photo is never sent or stored.
import { runAddress } from "./src/address.js";
import { detectFaces } from "./src/mtcnn.js";
import { sixCrops, faceTooSmall } from "./src/align.js";
import { scoreFace, describeShares, sharesAgainstScore } from "./src/place.js";
import { fixed } from "./src/numeric.js";

const REPO = "scut-fbp5500/how-attractive"; // the project's GitHub owner/name, as the notebooks' set-up cell
const MAX_PIXELS = 16e6; // a photo is read at most this large: the canvas limit of phones' Safari
const ASK_ABOVE = 200e6; // a download this large waits for the user's go-ahead (a phone's data plan)

// What the page knows, for the tests and the benchmark: its state, its load, its faces.
const page = { state: "loading", load: {}, faces: [], messages: [] };
window.fbp = page;

/** An element of the page by its id. */
const $ = (id) => document.getElementById(id);

/** Shows one plain message in the status line (a problem in red) and keeps it for the tests. */
function say(text, problem = false) {
  $("message").textContent = text;
  $("message").className = problem ? "problem" : "";
  page.messages.push(text);
}

/** Sets the page's state (loading, asking, ready, scoring, scored, failed) where tests see it. */
function setState(state) {
  page.state = state;
  document.body.dataset.state = state;
}

/** Downloads a file, reporting bytes received; a refused or broken download says so plainly. */
async function download(url, onBytes) {
  let response;
  try {
    response = await fetch(url);
  } catch {
    throw new Error(`${url} could not be reached. Check the connection and reload the page.`);
  }
  if (!response.ok) {
    throw new Error(`${url}: the server answered ${response.status}. Check the run's address and reload.`);
  }
  const reader = response.body.getReader();
  const chunks = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    onBytes(value.length);
  }
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

/** Waits until the user agrees to download this many bytes. */
function goAhead(total) {
  setState("asking");
  say(`This run's models are ${(total / 1e6).toFixed(0)} MB to download. On a phone, use Wi-Fi.`);
  const button = Object.assign(document.createElement("button"), {
    id: "download", type: "button", textContent: `Download ${(total / 1e6).toFixed(0)} MB` });
  $("status").append(button);
  return new Promise((resolve) => {
    button.onclick = () => {
      button.remove();
      setState("loading");
      resolve();
    };
  });
}

/** Refuses a model file whose sha256 is not the one web.json lists (changed or cut short on its way). */
async function checkHash(network, buffer) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  const hex = Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
  if (hex !== network.sha256) {
    throw new Error(`${network.file} is not the file this run lists (its sha256 differs): it was changed or ` +
      "cut short on its way. Reload the page; if it happens again, the run's files are damaged.");
  }
}

/** The run's manifest (web.json) and its networks as onnxruntime sessions, with progress shown. */
async function loadRun(ort, base) {
  const manifest = JSON.parse(new TextDecoder().decode(await download(`${base}web.json`, () => {})));
  if (manifest.format !== 1) {
    throw new Error(`This run's web files are of format ${manifest.format}, which this page cannot read. ` +
      "Open the page of the project's current version.");
  }
  // A frozen backbone the fold models share comes once (features), then each model's heads.
  const networks = [manifest.features, ...manifest.models].filter(Boolean);
  const files = [...networks.map((n) => n.file), ...Object.values(manifest.mtcnn)];
  const total = networks.reduce((sum, n) => sum + n.bytes, 0) + 2e6; // the MTCNN networks: ~2 MB
  if (total > ASK_ABOVE) await goAhead(total);
  let received = 0;
  $("progress").hidden = false;
  const buffers = [];
  for (const file of files) {
    buffers.push(await download(base + file, (bytes) => {
      received += bytes;
      $("progress").value = Math.min(1, received / total);
      say(`Downloading the model: ${(received / 1e6).toFixed(1)} of about ${(total / 1e6).toFixed(1)} MB…`);
    }));
  }
  for (const [i, network] of networks.entries()) await checkHash(network, buffers[i]);
  say("Preparing the model…");
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const sessions = [];
  for (const buffer of buffers) sessions.push(await ort.InferenceSession.create(buffer, options));
  $("progress").hidden = true;
  const features = manifest.features ? sessions.shift() : null;
  const [pnet, rnet, onet] = sessions.slice(manifest.models.length);
  return { manifest, features, models: sessions.slice(0, manifest.models.length), nets: { pnet, rnet, onet },
    bytes: received };
}

/** A photo file, upright by its EXIF, as RGB pixels; a file that is no image says so. */
async function readPhoto(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image", colorSpaceConversion: "none" });
  } catch {
    throw new Error(`${file.name}: this is not a photo this browser can read. Use a JPEG or PNG ` +
      "(on an iPhone, choose the photo from the gallery: it arrives as JPEG).");
  }
  const scale = Math.min(1, Math.sqrt(MAX_PIXELS / (bitmap.width * bitmap.height)));
  if (scale < 1) {
    bitmap = await createImageBitmap(bitmap, { resizeWidth: Math.round(bitmap.width * scale),
      resizeHeight: Math.round(bitmap.height * scale), resizeQuality: "high" });
  }
  return pixelsOf(bitmap, bitmap.width, bitmap.height);
}

/** RGB pixels of something a canvas can draw (an ImageBitmap, a video frame). */
function pixelsOf(source, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "white"; // a transparent photo on white, as Python's read_photo composites it
  context.fillRect(0, 0, width, height);
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const data = new Uint8ClampedArray(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    data[j] = rgba[i];
    data[j + 1] = rgba[i + 1];
    data[j + 2] = rgba[i + 2];
  }
  return { width, height, data };
}

/** Every model's outputs for a face's six crops, as one batch per model (through the shared backbone
 * once, if the models share one), and the milliseconds per crop. */
async function predict(ort, run, crops, size) {
  const batch = new Float32Array(crops.length * size * size * 3);
  crops.forEach((crop, i) => batch.set(crop.data, i * size * size * 3));
  const started = performance.now();
  let input = new ort.Tensor("float32", batch, [crops.length, size, size, 3]);
  const { features } = run.manifest;
  if (features) input = (await run.features.run({ [features.input]: input }))[features.output];
  const outputs = [];
  for (const [session, model] of run.models.map((s, i) => [s, run.manifest.models[i]])) {
    const result = await session.run({ [model.input]: input });
    outputs.push({ score: result[model.score].data,
      distribution: model.distribution ? result[model.distribution].data : null });
  }
  return { outputs, msPerCrop: (performance.now() - started) / crops.length }; // a crop through every model
}

/** A canvas showing an RGB image. */
function canvasOf(image) {
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const rgba = new ImageData(image.width, image.height);
  for (let i = 0, j = 0; j < image.data.length; i += 4, j += 3) {
    rgba.data.set(image.data.subarray(j, j + 3), i);
    rgba.data[i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(rgba, 0, 0);
  return canvas;
}

/** The photo with each face's box and number, as notebook 05 draws it. */
function drawPhoto(image, faces) {
  const canvas = canvasOf(image);
  canvas.id = "photo";
  const context = canvas.getContext("2d");
  context.lineWidth = Math.max(2, image.width / 300);
  context.font = `${Math.max(14, image.width / 30)}px sans-serif`;
  faces.forEach((face, i) => {
    const [x, y, w, h] = face.box;
    context.strokeStyle = context.fillStyle = "yellow";
    context.strokeRect(x, y, w, h);
    context.fillText(String(i + 1), x, Math.max(16, y - 4));
  });
  return canvas;
}

/** One face's result in the page's words (notebook 05's): score, place, span, disagreement, shares. */
function faceCard(number, result, crop, count) {
  const card = document.createElement("article");
  card.className = "face";
  card.append(canvasOf(crop));
  const text = document.createElement("div");
  const [low, high] = result.span;
  const lines = [
    `Face ${number}: more attractive than about ${fixed(result.percentile, 0)} % of the dataset ` +
      `(likely between ${fixed(result.low, 0)} % and ${fixed(result.high, 0)} %).`,
    `Shifted by 1.5 px or mirrored, it scores ${fixed(low, 2)} to ${fixed(high, 2)}: how much ` +
      "alignment moves it, not a confidence interval.",
  ];
  if (result.disagreement !== null) {
    lines.push(`The ${count} models' own scores (each the mean of its six crops) differ by ` +
      `SD ${fixed(result.disagreement, 2)}.`);
  }
  if (result.shares) lines.push(`Of the raters: ${describeShares(result.shares)}.${sharesAgainstScore(result)}`);
  text.innerHTML = `<p class="score">${fixed(result.score, 2)} <small>of 5</small></p>`;
  for (const line of lines) text.append(Object.assign(document.createElement("p"), { textContent: line }));
  card.append(text);
  return card;
}

/** Notebook 05's steps for one photo: detect, check, align, predict, place; shown as they finish. */
async function scorePhoto(ort, run, image) {
  setState("scoring");
  page.faces = [];
  $("results").replaceChildren();
  say("Looking for faces…");
  const { manifest } = run;
  const size = manifest.image_size;
  const found = await detectFaces(image, run.nets, ort, {
    maxSide: manifest.detection.max_side, minConfidence: manifest.detection.min_confidence });
  $("results").append(drawPhoto(image, found));
  if (!found.length) {
    say("No face found. Use a frontal, well-lit photo with the whole face visible, not too small and " +
      "not turned away.", true);
    return setState("scored");
  }
  const problems = [];
  for (const [i, face] of found.entries()) {
    const tooSmall = faceTooSmall(face, manifest.framing, size, manifest.max_enlargement);
    if (tooSmall) {
      problems.push(`Face ${i + 1}: ${tooSmall}`);
      continue;
    }
    say(`Scoring face ${i + 1} of ${found.length}…`);
    const crops = sixCrops(image, face, manifest.framing, size, manifest.eye_shifts);
    const { outputs, msPerCrop } = await predict(ort, run, crops, size);
    const result = scoreFace(outputs, manifest.models);
    page.faces.push({ ...face, ...result, msPerCrop });
    $("results").append(faceCard(i + 1, result, crops[0], manifest.models.length));
  }
  say([`${page.faces.length} of ${found.length} face(s) scored.`, ...problems].join(" "), problems.length > 0);
  setState("scored");
}

/** Runs a photo through the steps, saying plainly what went wrong with it. */
async function tryPhoto(ort, run, read) {
  try {
    await scorePhoto(ort, run, await read());
  } catch (error) {
    say(error.message, true);
    setState("scored");
  }
}

/** Why the camera cannot be used, in plain words, from getUserMedia's error. */
function cameraProblem(error) {
  if (error.name === "NotAllowedError" || error.name === "SecurityError") {
    return "The camera was refused. Allow it for this page in the browser's site settings and try " +
      "again, or choose a photo from the gallery.";
  }
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") {
    return "No camera was found. Choose a photo from the gallery instead.";
  }
  return `The camera could not be started (${error.name}). Choose a photo from the gallery instead.`;
}

/** The camera button: a live view, then one frame taken as the photo; the camera stops after it. */
async function useCamera(ort, run) {
  if (!navigator.mediaDevices?.getUserMedia) {
    return say("This browser offers no camera to pages like this one (it needs https). Choose a photo " +
      "from the gallery instead.", true);
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
  } catch (error) {
    return say(cameraProblem(error), true);
  }
  const video = $("video");
  video.srcObject = stream;
  $("shoot").onclick = () => {
    if (!video.videoWidth) return say("The camera has not started yet: wait a moment, then take the photo.");
    const image = pixelsOf(video, video.videoWidth, video.videoHeight);
    stream.getTracks().forEach((track) => track.stop());
    $("viewfinder").hidden = true;
    tryPhoto(ort, run, async () => image);
  };
  $("viewfinder").hidden = false;
  await video.play();
}

/** The texts the run ships (what the score is, how it is placed, the licence, the run) under the results. */
function showAbout(manifest) {
  for (const key of ["what", "references", "accuracy", "licence", "models"]) {
    $(key).textContent = manifest.texts[key];
  }
  $("project").href = `https://github.com/${REPO}`;
  $("about").hidden = false;
}

/** Loads the runtime and the run, then waits for photos. */
async function start() {
  if (typeof WebAssembly !== "object") {
    setState("failed");
    return say("This browser cannot run the model: it lacks WebAssembly. Use a current Chrome, Safari, " +
      "Firefox or Edge.", true);
  }
  let base;
  try {
    base = runAddress(new URLSearchParams(location.search).get("run"), location.href);
  } catch (error) {
    setState("failed");
    return say(error.message, true);
  }
  if (!base) {
    setState("failed");
    return say("No run named. Open this page with ?run=owner/name@revision, a run published on the " +
      "Hugging Face Hub from notebook 04 (no run of this project is published yet), or ?run=folder/ " +
      "for a run's web files on this site.", true);
  }
  let ort;
  try {
    ort = await import("./vendor/ort.wasm.min.mjs");
  } catch {
    setState("failed");
    return say("This page was not built: its runtime (vendor/) is missing. Run `npm ci && npm run " +
      "build` in web/, or `python -m fbp.web RUN --serve`.", true);
  }
  ort.env.wasm.wasmPaths = new URL("vendor/", location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const started = performance.now();
  let run;
  try {
    run = await loadRun(ort, base);
  } catch (error) {
    setState("failed");
    return say(error.message, true);
  }
  page.load = { ms: performance.now() - started, bytes: run.bytes, threads: ort.env.wasm.numThreads };
  showAbout(run.manifest);
  $("gallery").onchange = (event) => {
    const [file] = event.target.files;
    if (file) tryPhoto(ort, run, () => readPhoto(file));
    event.target.value = ""; // the same photo chosen again is scored again
  };
  $("camera").onclick = () => useCamera(ort, run);
  $("inputs").hidden = false;
  say(`The model is ready (${(run.bytes / 1e6).toFixed(1)} MB). Take a photo or choose one.`);
  setState("ready");
}

start();
