// Exact ports of the two Pillow operations fbp.faces uses on RGB photos (Pillow 13, src/libImaging):
// Image.resize (Resample.c, with Reduce.c for reducing_gap) and Image.transform(AFFINE, BICUBIC)
// (Geometry.c). Every rounding is Pillow's, so the bytes are Pillow's.

import { newImage } from "./image.js";

export const BICUBIC = "bicubic";
export const LANCZOS = "lanczos";

/** Pillow's resampling bicubic kernel (Resample.c, a = -0.5). */
function bicubicKernel(x) {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** sin(pi x) / (pi x). */
function sinc(x) {
  if (x === 0) return 1;
  x = x * Math.PI;
  return Math.sin(x) / x;
}

/** Pillow's Lanczos kernel: sinc truncated at 3. */
function lanczosKernel(x) {
  return -3 <= x && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

const FILTERS = { [BICUBIC]: { kernel: bicubicKernel, support: 2 }, [LANCZOS]: { kernel: lanczosKernel, support: 3 } };

const PRECISION_BITS = 22;  // 8-bit images: coefficients in fixed point, 32 - 8 - 2 bits

/** A fixed-point sum back to a byte, as Pillow's clip8 lookup does. */
function clip8(sum) {
  const value = sum >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

/** Pillow's precompute_coeffs then normalize_coeffs_8bpc: for each output pixel along one axis, the
 * first input pixel, how many it reads, and their fixed-point weights. in0 and in1 are C floats. */
function coefficients(inSize, in0, in1, outSize, filter) {
  const scale = Math.fround(in1 - in0) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const inverse = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const count = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < count; x++) {
      k[x] = filter.kernel((x + xmin - center + 0.5) * inverse);
      total += k[x];
    }
    for (let x = 0; x < count; x++) {
      const w = total !== 0 ? k[x] / total : k[x];
      weights[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = count;
  }
  return { bounds, weights, ksize };
}

/** Pillow's horizontal pass: `rows` rows of the image from row `offset`, resampled to `width`. */
function resampleHorizontal(image, width, offset, rows, { bounds, weights, ksize }) {
  const out = newImage(width, rows);
  for (let yy = 0; yy < rows; yy++) {
    const line = (yy + offset) * image.width;
    for (let xx = 0; xx < width; xx++) {
      const xmin = bounds[xx * 2];
      const count = bounds[xx * 2 + 1];
      for (let c = 0; c < 3; c++) {
        let sum = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < count; x++) sum += image.data[(line + xmin + x) * 3 + c] * weights[xx * ksize + x];
        out.data[(yy * width + xx) * 3 + c] = clip8(sum);
      }
    }
  }
  return out;
}

/** Pillow's vertical pass: the image resampled to `height` rows. */
function resampleVertical(image, height, { bounds, weights, ksize }) {
  const out = newImage(image.width, height);
  const stride = image.width * 3;
  for (let yy = 0; yy < height; yy++) {
    const ymin = bounds[yy * 2];
    const count = bounds[yy * 2 + 1];
    for (let i = 0; i < stride; i++) {
      let sum = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < count; y++) sum += image.data[(ymin + y) * stride + i] * weights[yy * ksize + y];
      out.data[yy * stride + i] = clip8(sum);
    }
  }
  return out;
}

/** The pixels of [left, top, right, bottom) (integers inside the image). */
function crop(image, [left, top, right, bottom]) {
  const out = newImage(right - left, bottom - top);
  for (let y = top; y < bottom; y++) {
    out.data.set(image.data.subarray((y * image.width + left) * 3, (y * image.width + right) * 3), (y - top) * out.width * 3);
  }
  return out;
}

/** Pillow's C resize (_resize, then ImagingResampleInner): the box of C floats resampled to width x
 * height in two passes, each rounded to bytes: horizontally first, unless the height shrinks by more
 * than twice as many pixels as the width; a whole-pixel box of that size is a crop. */
function resample(image, width, height, filter, box) {
  const [x0, y0, x1, y1] = box.map(Math.fround);
  if (x0 === Math.trunc(x0) && Math.fround(x1 - x0) === width && y0 === Math.trunc(y0) && Math.fround(y1 - y0) === height) {
    return crop(image, [x0, y0, x1, y1].map(Math.trunc));
  }
  const needHorizontal = width !== image.width || x0 !== 0 || x1 !== width;
  const needVertical = height !== image.height || y0 !== 0 || y1 !== height;
  const horizontal = coefficients(image.width, x0, x1, width, FILTERS[filter]);
  const vertical = coefficients(image.height, y0, y1, height, FILTERS[filter]);
  let out = image;
  if (image.height - height > 0 && image.height - height > (image.width - width) * 2) {
    if (needVertical) out = resampleVertical(out, height, vertical);
    if (needHorizontal) out = resampleHorizontal(out, width, 0, height, horizontal);
  } else {
    if (needHorizontal) {
      const first = vertical.bounds[0];  // the rows the vertical pass reads
      const last = vertical.bounds[height * 2 - 2] + vertical.bounds[height * 2 - 1];
      for (let i = 0; i < height; i++) vertical.bounds[i * 2] -= first;
      out = resampleHorizontal(out, width, first, last - first, horizontal);
    }
    if (needVertical) out = resampleVertical(out, height, vertical);
  }
  return out === image ? { ...image, data: image.data.slice() } : out;
}

/** Pillow's division_UINT32: 2^32 / (256 n) in C float arithmetic, truncated. */
function multiplier(n) {
  return Math.trunc(Math.fround(2 ** 32 / Math.fround(256 * n)));
}

// Reduce.c's cells divided by a shift, not by a multiplier: 1x2, 2x1, 2x2 and 4x4 whole cells.
const SHIFTS = { "1x2": 1, "2x1": 1, "2x2": 2, "4x4": 4 };

/** A cell's sum of `n` pixels divided as Reduce.c does: rounded, by shift or by fixed-point multiplier. */
function divided(sum, n, shift) {
  const rounded = sum + Math.floor(n / 2);
  return shift === undefined ? Math.floor((rounded * multiplier(n)) / 2 ** 24) : rounded >> shift;
}

/** Pillow's Image.reduce((xscale, yscale), box): each xscale x yscale cell of the box averaged; the
 * last column and row are the cells cut short by the box. */
export function reduce(image, xscale, yscale, [left, top, right, bottom]) {
  const [width, height] = [Math.ceil((right - left) / xscale), Math.ceil((bottom - top) / yscale)];
  const [whole, wholeRows] = [Math.floor((right - left) / xscale), Math.floor((bottom - top) / yscale)];
  const shift = SHIFTS[`${xscale}x${yscale}`];
  const out = newImage(width, height);
  for (let y = 0; y < height; y++) {
    const ya = top + y * yscale;
    const yb = Math.min(ya + yscale, bottom);
    for (let x = 0; x < width; x++) {
      const xa = left + x * xscale;
      const xb = Math.min(xa + xscale, right);
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let yy = ya; yy < yb; yy++) for (let xx = xa; xx < xb; xx++) sum += image.data[(yy * image.width + xx) * 3 + c];
        out.data[(y * width + x) * 3 + c] = divided(sum, (xb - xa) * (yb - ya), x < whole && y < wholeRows ? shift : undefined);
      }
    }
  }
  return out;
}

/** Image._get_safe_box: the box widened by the filter's reach, in whole pixels inside the image. */
function safeBox(image, width, height, filter, box) {
  const support = FILTERS[filter].support - 0.5;
  const [sx, sy] = [support * ((box[2] - box[0]) / width), support * ((box[3] - box[1]) / height)];
  return [Math.max(0, Math.trunc(box[0] - sx)), Math.max(0, Math.trunc(box[1] - sy)),
    Math.min(image.width, Math.ceil(box[2] + sx)), Math.min(image.height, Math.ceil(box[3] + sy))];
}

/** Pillow's image.resize((width, height), filter, box, reducing_gap) of an RGB image: with a reducing
 * gap, first Image.reduce by the whole factor that leaves at least that gap, then the filter. */
export function resize(image, width, height, filter = BICUBIC, box = null, reducingGap = null) {
  box = box ?? [0, 0, image.width, image.height];
  const whole = box[0] === 0 && box[1] === 0 && box[2] === image.width && box[3] === image.height;
  if (whole && width === image.width && height === image.height) return { ...image, data: image.data.slice() };
  if (reducingGap !== null) {
    const xscale = Math.trunc((box[2] - box[0]) / width / reducingGap) || 1;
    const yscale = Math.trunc((box[3] - box[1]) / height / reducingGap) || 1;
    if (xscale > 1 || yscale > 1) {
      const safe = safeBox(image, width, height, filter, box);
      image = reduce(image, xscale, yscale, safe);
      box = [(box[0] - safe[0]) / xscale, (box[1] - safe[1]) / yscale, (box[2] - safe[0]) / xscale, (box[3] - safe[1]) / yscale];
    }
  }
  return resample(image, width, height, filter, box);
}

/** Geometry.c's bicubic interpolation of four values at d in [0, 1) past the second (a = -1). */
function cubic(v1, v2, v3, v4, d) {
  const p2 = -v1 + v3;
  const p3 = 2 * (v1 - v2) + v3 - v4;
  const p4 = -v1 + v2 - v3 + v4;
  return v2 + d * (p2 + d * (p3 + d * p4));
}

/** A value clamped to [0, size - 1] (Geometry.c's XCLIP and YCLIP). */
function clamped(value, size) {
  return value < 0 ? 0 : value < size ? value : size - 1;
}

/** Geometry.c's bicubic_filter32RGB: the image's colour at (x, y) (pixel centres at +0.5), written
 * into out at `at`; nothing outside the image, which keeps the fill colour there. */
function bicubicAt({ width, height, data }, x, y, out, at) {
  if (x < 0 || x >= width || y < 0 || y >= height) return;
  const fx = Math.floor(x - 0.5);
  const fy = Math.floor(y - 0.5);
  const dx = x - 0.5 - fx;
  const dy = y - 0.5 - fy;
  const [c0, c1, c2, c3] = [clamped(fx - 1, width) * 3, clamped(fx, width) * 3, clamped(fx + 1, width) * 3, clamped(fx + 2, width) * 3];
  const row = (r, c) => {  // the first row is clamped to the image, a row past its edge repeats the one before
    const line = r * width * 3 + c;
    return cubic(data[line + c0], data[line + c1], data[line + c2], data[line + c3], dx);
  };
  for (let c = 0; c < 3; c++) {
    const v1 = row(clamped(fy - 1, height), c);
    const v2 = fy >= 0 && fy < height ? row(fy, c) : v1;
    const v3 = fy + 1 >= 0 && fy + 1 < height ? row(fy + 1, c) : v2;
    const v4 = fy + 2 >= 0 && fy + 2 < height ? row(fy + 2, c) : v3;
    const value = cubic(v1, v2, v3, v4, dy);
    out[at + c] = value <= 0 ? 0 : value >= 255 ? 255 : Math.trunc(value);
  }
}

/** Pillow's image.transform((size, size), AFFINE, [a, b, c, d, e, f], BICUBIC, fillcolor=fill): output
 * pixel (x, y) takes the image's colour at (a x' + b y' + c, d x' + e y' + f), x' = x + 0.5, y' = y + 0.5. */
export function affine(image, size, [a, b, c, d, e, f], fill) {
  const out = newImage(size, size, fill);
  for (let y = 0; y < size; y++) {
    const yin = y + 0.5;
    for (let x = 0; x < size; x++) {
      const xin = x + 0.5;
      bicubicAt(image, a * xin + b * yin + c, d * xin + e * yin + f, out.data, (y * size + x) * 3);
    }
  }
  return out;
}
