// Exact ports of the two TensorFlow image ops the mtcnn package uses, in TensorFlow's float32
// arithmetic (Math.fround after every operation; a double result of one float operation rounded to
// float is the float result): tf.image.resize(method=AREA) (resize_area_op.cc) and
// tf.image.crop_and_resize, bilinear, extrapolation 0 (crop_and_resize_op.cc).
// A float image is {width, height, data}: 3 values per pixel, row-major.

const f = Math.fround;

/** How much of input cell `i` lies in [start, end) (ResizeAreaOp's start_scale and y scales). */
function overlap(i, start, end, scale) {
  if (i < start) return i + 1 > end ? scale : f(i + 1 - start);
  return i + 1 > end ? f(end - i) : 1;
}

/** For each output position along one axis: its input cells (clamped to the image) and their weights. */
function areaCells(inSize, outSize) {
  const scale = f(inSize / outSize);
  return Array.from({ length: outSize }, (_, o) => {
    const [start, end] = [f(o * scale), f((o + 1) * scale)];
    const cells = [];
    for (let i = Math.floor(start); i < Math.ceil(end); i++) {
      cells.push({ index: Math.min(Math.max(i, 0), inSize - 1), weight: overlap(i, start, end, scale) });
    }
    return cells;
  });
}

/** One output value of ResizeAreaOp: the input row sums, the first and last columns weighted, and in
 * between summed as they come, each row sum weighted, all times 1 / (its area). */
function areaValue({ width, data }, rows, columns, channel, scale) {
  const [first, last] = [columns[0], columns[columns.length - 1]];
  let total = 0;
  for (const row of rows) {
    const line = row.index * width;
    let sum = f(data[(line + first.index) * 3 + channel] * first.weight);
    if (columns.length > 1) {
      for (let i = 1; i < columns.length - 1; i++) sum = f(sum + data[(line + columns[i].index) * 3 + channel]);
      sum = f(sum + f(data[(line + last.index) * 3 + channel] * last.weight));
    }
    total = f(total + f(sum * row.weight));
  }
  return f(total * scale);
}

/** tf.image.resize(image, (height, width), method=AREA) of a float image: a float32 image. */
export function resizeArea(image, width, height) {
  const [rowsOf, columnsOf] = [areaCells(image.height, height), areaCells(image.width, width)];
  const scale = f(1 / f(f(image.height / height) * f(image.width / width)));
  const data = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = areaValue(image, rowsOf[y], columnsOf[x], c, scale);
    }
  }
  return { width, height, data };
}

/** Where crop_and_resize samples along one axis: crop position i of `size` (> 1) in [from, to]. */
function samplePoints(from, to, inSize, size) {
  const step = f(f(f(to - from) * (inSize - 1)) / (size - 1));
  return Array.from({ length: size }, (_, i) => {
    const at = f(f(from * (inSize - 1)) + f(i * step));
    const low = Math.floor(at);
    return at < 0 || at > inSize - 1 ? null : { low, high: Math.ceil(at), lerp: f(at - low) };
  });
}

/** Linear interpolation a + (b - a) t in float32. */
function lerp(a, b, t) {
  return f(a + f(f(b - a) * t));
}

/** tf.image.crop_and_resize(image, boxes, size x size), bilinear, 0 outside the image: boxes are
 * [y1, x1, y2, x2] as fractions of the image (C floats); the crops as one float32 [n, size, size, 3]. */
export function cropAndResize(image, boxes, size) {
  const data = new Float32Array(boxes.length * size * size * 3);
  boxes.forEach((box, n) => {
    const [y1, x1, y2, x2] = box.map(f);
    const [ys, xs] = [samplePoints(y1, y2, image.height, size), samplePoints(x1, x2, image.width, size)];
    ys.forEach((y, i) => xs.forEach((x, j) => {
      if (!y || !x) return;
      const at = (row, column, c) => image.data[(row * image.width + column) * 3 + c];
      for (let c = 0; c < 3; c++) {
        const top = lerp(at(y.low, x.low, c), at(y.low, x.high, c), x.lerp);
        const bottom = lerp(at(y.high, x.low, c), at(y.high, x.high, c), x.lerp);
        data[((n * size + i) * size + j) * 3 + c] = lerp(top, bottom, y.lerp);
      }
    }));
  });
  return data;
}
