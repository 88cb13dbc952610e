import assert from "node:assert/strict";
import test from "node:test";

import { eyesOf, faceTooSmall, minEyeDistance, sixCrops } from "../src/align.js";
import { mirrored } from "../src/image.js";
import { bytes, fixture, image, procedural } from "./fixtures.mjs";

const ALIGN = fixture("align");
const PHOTOS = { procedural: () => procedural(...ALIGN.procedural), noise40: () => image("noise40") };

test("mirrored flips an image left to right, as NumPy's image[:, ::-1]", () => {
  assert.deepEqual(mirrored(image(ALIGN.mirror.image)).data, bytes(ALIGN.mirror.expected));
});

test("sixCrops gives notebook 05's crops: align_face at each eye shift (shrunk first or not), then mirrors", () => {
  for (const { image: name, face, size, aligned } of ALIGN.crops) {
    const crops = sixCrops(PHOTOS[name](), face, ALIGN.framing, size, ALIGN.shifts);
    const expected = [0, 1, 2].map((i) => ({ width: size, height: size, data: bytes(aligned).subarray(i * size * size * 3, (i + 1) * size * size * 3) }));
    assert.deepEqual(crops, [...expected, ...expected.map(mirrored)], `${name}, size ${size}`);
  }
});

test("eyesOf orders the eyes left to right", () => {
  const face = { leftEye: [20, 5], rightEye: [10, 6] };
  assert.deepEqual(eyesOf(face), [[10, 6], [20, 5]]);
  assert.deepEqual(eyesOf({ leftEye: [10, 6], rightEye: [20, 5] }), [[10, 6], [20, 5]]);
});

test("minEyeDistance and faceTooSmall say what fbp.faces.check_face_size says", () => {
  for (const { face, size, needed, message } of ALIGN.checks) {
    assert.equal(minEyeDistance(ALIGN.framing, size, 2.0), needed);
    assert.equal(faceTooSmall(face, ALIGN.framing, size, 2.0), message);
  }
});
