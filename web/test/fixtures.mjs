// The fixtures make_fixtures.py writes (what Python computes), as the tests read them. (Node's test
// runner runs every module in test/, this one too: it has no tests of its own.)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

/** A fixture file's content (test/fixtures/<name>.json). */
export function fixture(name) {
  return JSON.parse(readFileSync(new URL(`fixtures/${name}.json`, import.meta.url), "utf8"));
}

/** Bytes written in base64. */
export function bytes(text) {
  return new Uint8ClampedArray(Buffer.from(text, "base64"));
}

/** float32 values written in base64 (little-endian). */
export function floats(text) {
  const buffer = Buffer.from(text, "base64");
  return new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length));
}

const IMAGES = fixture("images");

/** A stored RGB image by name. */
export function image(name) {
  const { width, height, data } = IMAGES[name];
  return { width, height, data: bytes(data) };
}

/** make_fixtures.py's procedural(width, height): dark stripes, three bright noisy squares. */
export function procedural(width, height) {
  const squares = [[Math.floor(width * 3 / 10), Math.floor(height * 4 / 10), Math.floor(width / 16)],
    [Math.floor(width * 7 / 10), Math.floor(height / 2), Math.floor(width / 12)],
    [Math.floor(width / 2), Math.floor(height * 3 / 4), Math.floor(width / 20)]];
  const data = new Uint8ClampedArray(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inside = squares.some(([cx, cy, half]) => Math.abs(x - cx) < half && Math.abs(y - cy) < half);
      for (let c = 0; c < 3; c++) {
        data[(y * width + x) * 3 + c] = inside ? 155 + (x * y * 31 + c * 17) % 101 : (x * 7 + y * 3 + c * 29) % 100;
      }
    }
  }
  return { width, height, data };
}

/** The largest absolute difference between two arrays of numbers. */
export function maxDifference(a, b) {
  assert.equal(a.length, b.length);
  return a.reduce((most, value, i) => Math.max(most, Math.abs(value - b[i])), 0);
}
