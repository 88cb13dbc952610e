// RGB images as the page passes them around: {width, height, data}, 3 bytes per pixel, row-major.

/** A width x height RGB image, every pixel `fill` ([r, g, b]; black by default). */
export function newImage(width, height, fill = [0, 0, 0]) {
  const data = new Uint8ClampedArray(width * height * 3);
  if (fill.some((value) => value !== 0)) for (let i = 0; i < data.length; i++) data[i] = fill[i % 3];
  return { width, height, data };
}

/** The image mirrored left to right (NumPy's image[:, ::-1]). */
export function mirrored(image) {
  const { width, height, data } = image;
  const out = newImage(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const from = (y * width + x) * 3;
      out.data.set(data.subarray(from, from + 3), (y * width + width - 1 - x) * 3);
    }
  }
  return out;
}
