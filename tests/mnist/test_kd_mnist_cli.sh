#!/bin/bash
# kd-mnist, the MNIST example's program, from the outside.
#
#   bad-input: bad data directories (built from tiny IDX fixtures: missing, wrong magic,
#     truncated, gzip without its trailer or with garbage after it, FIFOs, mismatched counts,
#     32x32 images, a label 10, ...), teacher checkpoints that will not load (a FIFO too) and bad
#     options (unknown, --alpha 2, ...) each make it exit non-zero within 60 s, without a crash
#     (status < 128), with exactly one line on stderr starting "kd-mnist:", and nothing on
#     stdout. A control run on the good fixture (tiny networks) succeeds, so each failure is
#     the defect's doing.
#   quick: the CI-sized end-to-end run, --quick on Fashion-MNIST with --json: exit 0, the table
#     on stdout, nothing on stderr (--quiet), and a JSON report with the three models, integer
#     test errors, 10000 training and test images, and a teacher far better than chance.
#
# Usage: test_kd_mnist_cli.sh bad-input <kd-mnist>
#        test_kd_mnist_cli.sh quick <kd-mnist> <Fashion-MNIST directory>
set -eu

usage="usage: test_kd_mnist_cli.sh bad-input|quick <kd-mnist> [<data directory>]"
mode=${1:?$usage}
kd_mnist=${2:?$usage}
name="test_kd_mnist_cli ($mode)"

fail() {
    echo "$name: FAIL: $*" >&2
    exit 1
}

[ -x "$kd_mnist" ] || fail "$kd_mnist: not an executable"
command -v python3 >/dev/null 2>&1 || fail "python3 not found"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kd-test-mnist-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

bad_input() {
    # fixture DIR TRAIN TEST [SIDE [TRAIN_LABELS [GZ [LAST_TEST_LABEL]]]]: the four IDX files of
    # a data set, TRAIN training images of SIDE x SIDE pixels (28), TRAIN_LABELS training
    # labels (TRAIN), TEST 28x28 test images and labels; gzip-compressed if GZ is 1; the last
    # test label LAST_TEST_LABEL if given.
    cat >"$tmp/fixture.py" <<'EOF'
import gzip, os, struct, sys

def write(path, content, gz):
    if gz:
        with gzip.open(path + ".gz", "wb") as f:
            f.write(content)
    else:
        with open(path, "wb") as f:
            f.write(content)

def images(count, side, seed):
    data = bytes((i * 37 + seed) % 256 for i in range(count * side * side))
    return struct.pack(">IIII", 0x803, count, side, side) + data

def labels(count, last=None):
    values = [i % 10 for i in range(count)]
    if last is not None:
        values[-1] = last
    return struct.pack(">II", 0x801, count) + bytes(values)

args = sys.argv[1:] + [None] * 7
directory = args[0]
train, test = int(args[1]), int(args[2])
side = int(args[3] or 28)
train_labels = int(args[4] or train)
gz = args[5] == "1"
last = None if args[6] is None else int(args[6])
os.makedirs(directory)
write(os.path.join(directory, "train-images-idx3-ubyte"), images(train, side, 1), gz)
write(os.path.join(directory, "train-labels-idx1-ubyte"), labels(train_labels), gz)
write(os.path.join(directory, "t10k-images-idx3-ubyte"), images(test, 28, 2), gz)
write(os.path.join(directory, "t10k-labels-idx1-ubyte"), labels(test, last), gz)
EOF
    fixture() {
        python3 "$tmp/fixture.py" "$@"
    }

    # The control: the good fixtures, plain and compressed, load and train (tiny networks).
    fixture "$tmp/good" 30 20
    fixture "$tmp/good-gz" 30 20 28 30 1
    for dir in good good-gz; do
        "$kd_mnist" --data "$tmp/$dir" --epochs 1 --hidden 4 --teacher-hidden 4 --batch 10 --quiet \
            >"$tmp/stdout" 2>"$tmp/stderr" \
            || fail "the control run on $dir failed: $(cat "$tmp/stderr")"
        grep -q "^training images 30 (transfer set 30), test images 20;" "$tmp/stdout" \
            || fail "the control run on $dir: unexpected output: $(cat "$tmp/stdout")"
    done

    # --teacher FILE: the first run trains the teacher and saves it, the second loads it (a
    # teacher of another width than --teacher-hidden says) and reports it as loaded, with its
    # own width, no epoch count and the same test errors.
    for run in 1 2; do
        "$kd_mnist" --data "$tmp/good" --epochs 1 --hidden 4 --teacher-hidden $((4 + run)) \
            --batch 10 --quiet --teacher "$tmp/teacher.kdc" --json "$tmp/reload-$run.json" \
            >"$tmp/stdout" 2>"$tmp/stderr" || fail "--teacher run $run: $(cat "$tmp/stderr")"
    done
    python3 - "$tmp/reload-1.json" "$tmp/reload-2.json" <<'EOF' || fail "--teacher: reload"
import json, sys
first, second = (json.load(open(path))["models"]["teacher"] for path in sys.argv[1:])
assert first["loaded"] is False and first["epochs"] == 4, first  # 10/3 of --epochs 1
assert second["loaded"] is True and second["epochs"] is None, second
assert first["widths"] == second["widths"] == [784, 5, 5, 10], (first, second)
assert first["test_errors"] == second["test_errors"], (first, second)
EOF
    grep -Eq '^teacher 784-5-5-10 .* - +loaded$' "$tmp/stdout" \
        || fail "--teacher: the table's teacher line: $(cat "$tmp/stdout")"

    # expect_failure WHAT PATTERN ARGS...: kd-mnist ARGS fails as it should, and its one line on
    # stderr holds PATTERN (a fixed string).
    expect_failure() {
        what=$1 pattern=$2
        shift 2
        if timeout 60 "$kd_mnist" "$@" >"$tmp/stdout" 2>"$tmp/stderr"; then
            fail "$what: exit status 0"
        else
            status=$?
        fi
        [ "$status" -ne 124 ] || fail "$what: still running after 60 s (waiting on a FIFO?)"
        [ "$status" -lt 128 ] || fail "$what: exit status $status (a crash?): $(cat "$tmp/stderr")"
        lines=$(wc -l <"$tmp/stderr")
        [ "$lines" -eq 1 ] || fail "$what: $lines lines on stderr, not 1: $(cat "$tmp/stderr")"
        grep -q '^kd-mnist: ' "$tmp/stderr" || fail "$what: stderr: $(cat "$tmp/stderr")"
        grep -qF -- "$pattern" "$tmp/stderr" || fail "$what: stderr lacks '$pattern': $(cat "$tmp/stderr")"
        [ ! -s "$tmp/stdout" ] || fail "$what: wrote to stdout: $(cat "$tmp/stdout")"
        echo "$what: exit $status: $(cat "$tmp/stderr")"
    }
    # bad_data WHAT DIR PATTERN: kd-mnist --data DIR fails.
    bad_data() {
        expect_failure "$1" "$3" --data "$2" --epochs 1 --hidden 4 --teacher-hidden 4 --quiet
    }

    bad_data "missing directory" "$tmp/no-such-directory" "$tmp/no-such-directory: no such directory"
    bad_data "a file, not a directory" "$tmp/fixture.py" "no such directory"
    mkdir "$tmp/empty"
    bad_data "empty directory" "$tmp/empty" "train-images-idx3-ubyte"
    cp -R "$tmp/good" "$tmp/no-test-labels"
    rm "$tmp/no-test-labels/t10k-labels-idx1-ubyte"
    bad_data "missing test labels" "$tmp/no-test-labels" "t10k-labels-idx1-ubyte"
    # A FIFO, which a reader would wait on forever, in place of a file, plain or compressed.
    cp -R "$tmp/good" "$tmp/fifo"
    rm "$tmp/fifo/train-labels-idx1-ubyte"
    mkfifo "$tmp/fifo/train-labels-idx1-ubyte"
    bad_data "a FIFO as training labels" "$tmp/fifo" "train-labels-idx1-ubyte: not a regular file"
    cp -R "$tmp/good-gz" "$tmp/fifo-gz"
    rm "$tmp/fifo-gz/t10k-images-idx3-ubyte.gz"
    mkfifo "$tmp/fifo-gz/t10k-images-idx3-ubyte.gz"
    bad_data "a FIFO as compressed test images" "$tmp/fifo-gz" "t10k-images-idx3-ubyte.gz: not a regular file"

    # --teacher FILE that will not load: a valid checkpoint of a network that does not map the
    # 784 pixels to the 10 classes (once destroyed twice: a crash), or a corrupt one. The
    # control: the same writer's 784-5-5-10 checkpoint loads.
    cat >"$tmp/checkpoint.py" <<'EOF'
import struct, sys, zlib

# checkpoint.py PATH WIDTH...: a checkpoint (docs/checkpoint-format.md) of a network of these
# widths, every parameter 0.01, no optimizer.
path, widths = sys.argv[1], [int(w) for w in sys.argv[2:]]
body = b"KDCKPT\r\n" + struct.pack("<IIQ", 1, 0, len(widths))
body += struct.pack("<%dQ" % len(widths), *widths) + struct.pack("<ddd", 0, 0, 0)
body += struct.pack("<4Q", 1, 2, 3, 4)
count = sum(outputs * (inputs + 1) for inputs, outputs in zip(widths, widths[1:]))
body += struct.pack("<Q", count) + struct.pack("<%df" % count, *[0.01] * count)
with open(path, "wb") as f:
    f.write(body + struct.pack("<I", zlib.crc32(body)))
EOF
    # bad_teacher WHAT FILE PATTERN: kd-mnist --teacher FILE fails on the good data.
    bad_teacher() {
        expect_failure "$1" "$3" --data "$tmp/good" --epochs 1 --hidden 4 --batch 10 --quiet --teacher "$2"
    }
    python3 "$tmp/checkpoint.py" "$tmp/written.kdc" 784 5 5 10
    "$kd_mnist" --data "$tmp/good" --epochs 1 --hidden 4 --batch 10 --quiet --teacher "$tmp/written.kdc" \
        >"$tmp/stdout" 2>"$tmp/stderr" || fail "--teacher: a written 784-5-5-10 checkpoint: $(cat "$tmp/stderr")"
    grep -Eq '^teacher 784-5-5-10 .* - +loaded$' "$tmp/stdout" \
        || fail "--teacher: a written 784-5-5-10 checkpoint: $(cat "$tmp/stdout")"
    python3 "$tmp/checkpoint.py" "$tmp/five-classes.kdc" 784 5 5 5
    bad_teacher "--teacher with 5 outputs" "$tmp/five-classes.kdc" \
        "five-classes.kdc: cannot load the teacher: its network maps 784 inputs to 5 outputs"
    python3 "$tmp/checkpoint.py" "$tmp/two-inputs.kdc" 2 5 10
    bad_teacher "--teacher with 2 inputs" "$tmp/two-inputs.kdc" \
        "two-inputs.kdc: cannot load the teacher: its network maps 2 inputs to 10 outputs"
    head -c 100 "$tmp/written.kdc" >"$tmp/cut.kdc"
    bad_teacher "--teacher truncated" "$tmp/cut.kdc" "cut.kdc: cannot load the teacher: file is truncated"
    mkfifo "$tmp/teacher.fifo"
    bad_teacher "--teacher FIFO" "$tmp/teacher.fifo" "teacher.fifo: cannot load the teacher: not a regular file"

    # Wrong magic numbers: two dimensions where images need three, and image labels.
    cp -R "$tmp/good" "$tmp/magic-802"
    printf '\000\000\010\002' | dd of="$tmp/magic-802/train-images-idx3-ubyte" conv=notrunc status=none
    bad_data "wrong magic (0x802)" "$tmp/magic-802" "train-images-idx3-ubyte: not an IDX file"
    cp -R "$tmp/good" "$tmp/magic-803"
    cp "$tmp/good/t10k-images-idx3-ubyte" "$tmp/magic-803/t10k-labels-idx1-ubyte"
    bad_data "images as labels" "$tmp/magic-803" "t10k-labels-idx1-ubyte: not an IDX file"
    cp -R "$tmp/good" "$tmp/text"
    echo "not an IDX file" >"$tmp/text/train-labels-idx1-ubyte"
    bad_data "text as labels" "$tmp/text" "train-labels-idx1-ubyte"

    # Truncated: data, header, and a compressed file cut short.
    cp -R "$tmp/good" "$tmp/truncated"
    head -c 1000 "$tmp/good/train-images-idx3-ubyte" >"$tmp/truncated/train-images-idx3-ubyte"
    bad_data "truncated images" "$tmp/truncated" "train-images-idx3-ubyte: truncated"
    cp -R "$tmp/good" "$tmp/truncated-header"
    head -c 10 "$tmp/good/t10k-images-idx3-ubyte" >"$tmp/truncated-header/t10k-images-idx3-ubyte"
    bad_data "truncated header" "$tmp/truncated-header" "t10k-images-idx3-ubyte: truncated header"
    cp -R "$tmp/good-gz" "$tmp/truncated-gz"
    size=$(wc -c <"$tmp/good-gz/t10k-images-idx3-ubyte.gz")
    head -c $((size / 2)) "$tmp/good-gz/t10k-images-idx3-ubyte.gz" >"$tmp/truncated-gz/t10k-images-idx3-ubyte.gz"
    bad_data "truncated gzip" "$tmp/truncated-gz" "t10k-images-idx3-ubyte.gz"
    # A whole deflate stream without the gzip trailer (CRC-32 and length), or with garbage after it.
    cp -R "$tmp/good-gz" "$tmp/no-trailer-gz"
    size=$(wc -c <"$tmp/good-gz/t10k-labels-idx1-ubyte.gz")
    head -c $((size - 8)) "$tmp/good-gz/t10k-labels-idx1-ubyte.gz" >"$tmp/no-trailer-gz/t10k-labels-idx1-ubyte.gz"
    bad_data "gzip without its trailer" "$tmp/no-trailer-gz" "t10k-labels-idx1-ubyte.gz: truncated gzip stream"
    cp -R "$tmp/good-gz" "$tmp/garbage-gz"
    printf 'garbage' >>"$tmp/garbage-gz/train-images-idx3-ubyte.gz"
    bad_data "garbage after gzip" "$tmp/garbage-gz" "train-images-idx3-ubyte.gz: trailing garbage after the gzip stream"
    # A decompression bomb: 16 MiB of zeros (16 KiB compressed) under a header announcing
    # 2^32 - 1 images; refused from its header.
    cp -R "$tmp/good" "$tmp/bomb"
    rm "$tmp/bomb/train-images-idx3-ubyte"
    python3 - "$tmp/bomb/train-images-idx3-ubyte.gz" <<'EOF'
import gzip, struct, sys
with gzip.open(sys.argv[1], "wb") as f:
    f.write(struct.pack(">IIII", 0x803, 2**32 - 1, 28, 28) + bytes(16 << 20))
EOF
    bad_data "decompression bomb" "$tmp/bomb" "train-images-idx3-ubyte.gz: the header announces 4294967295 items of 784 bytes, over the limit of 256 MiB"
    cp -R "$tmp/good" "$tmp/trailing"
    printf 'x' >>"$tmp/trailing/train-labels-idx1-ubyte"
    bad_data "trailing data" "$tmp/trailing" "train-labels-idx1-ubyte: trailing data"

    fixture "$tmp/counts" 30 20 28 29
    bad_data "mismatched counts" "$tmp/counts" "30 images in train-images-idx3-ubyte but 29 labels"
    fixture "$tmp/side-32" 30 20 32
    bad_data "32x32 images" "$tmp/side-32" "images are 32x32, this program needs 28x28"
    fixture "$tmp/side-32-gz" 30 20 32 30 1
    bad_data "32x32 images, compressed" "$tmp/side-32-gz" "images are 32x32"
    fixture "$tmp/label-10" 30 20 28 30 0 10
    bad_data "a label 10" "$tmp/label-10" "label 10 of item 19"

    # --omit-class K on a training set of class K alone: no transfer set is left (once reported
    # as "out of memory" after training the teacher). The control: another class is omitted.
    cp -R "$tmp/good" "$tmp/only-3"
    python3 -c 'import struct, sys; open(sys.argv[1], "wb").write(struct.pack(">II", 0x801, 30) + bytes([3] * 30))' \
        "$tmp/only-3/train-labels-idx1-ubyte"
    "$kd_mnist" --data "$tmp/only-3" --omit-class 4 --epochs 1 --hidden 4 --teacher-hidden 4 --batch 10 \
        --quiet >"$tmp/stdout" 2>"$tmp/stderr" || fail "--omit-class 4 on 3s alone: $(cat "$tmp/stderr")"
    grep -q "^training images 30 (transfer set 30)" "$tmp/stdout" \
        || fail "--omit-class 4 on 3s alone: unexpected output: $(cat "$tmp/stdout")"
    expect_failure "--omit-class 3 on 3s alone" \
        "--omit-class 3: every training image is of class 3, the transfer set would be empty" \
        --data "$tmp/only-3" --omit-class 3 --epochs 1 --hidden 4 --teacher-hidden 4 --batch 10 --quiet

    # Bad options (on good data: were one accepted, the tiny run would succeed and be caught),
    # exit status 2. Integer options take plain decimal integers only: no fraction (once cut
    # to an integer: --epochs 1.9 ran one epoch), exponent, hexadecimal, sign or space.
    good=$tmp/good
    # bad_option WHAT PATTERN ARGS...: kd-mnist --data <good> ARGS fails with exit status 2.
    bad_option() {
        what=$1 pattern=$2
        shift 2
        expect_failure "$what" "$pattern" --data "$good" "$@"
        [ "$status" -eq 2 ] || fail "$what: exit status $status, not 2"
    }
    bad_option "unknown option" "unknown option '--frobnicate'" --frobnicate
    bad_option "stray argument" "unknown option 'extra'" extra
    bad_option "--alpha 2" "--alpha needs a valid value: a number from 0 to 1" --alpha 2
    bad_option "--alpha -0.1" "--alpha needs a valid value" --alpha -0.1
    bad_option "--alpha without value" "--alpha needs a value" --alpha
    bad_option "--epochs 0" "--epochs needs a valid value: a decimal integer from 1 to 100000" --epochs 0
    bad_option "--threads abc" "--threads needs a valid value" --threads abc
    bad_option "--omit-class 10" "--omit-class needs a valid value" --omit-class 10
    for value in 1.9 1.0 0x10 1e1 +1 -1 " 1" "1 " "" 99999999999999999999999; do
        bad_option "--epochs '$value'" "--epochs needs a valid value: a decimal integer" --epochs "$value"
    done
    bad_option "--batch 2.5" "--batch needs a valid value: a decimal integer" --batch 2.5
    bad_option "--omit-class 3.7" "--omit-class needs a valid value: a decimal integer from 0 to 9" --omit-class 3.7
    bad_option "--seed 1e3" "--seed needs a valid value: a decimal integer" --seed 1e3
    bad_option "--seed 2^53 + 1" "--seed needs a valid value" --seed 9007199254740993
    bad_option "--ensemble 2.0" "--ensemble needs a valid value" --ensemble 2.0
    bad_option "--data without value" "--data needs a value" --data
}

quick() {
    data=${1:?$usage}
    [ -d "$data" ] || fail "$data: no such directory (Debian: apt-get install dataset-fashion-mnist)"
    start=$(date +%s)
    "$kd_mnist" --quick --data "$data" --json "$tmp/out.json" --quiet --threads 2 \
        >"$tmp/stdout" 2>"$tmp/stderr" \
        || fail "exit status $?: $(cat "$tmp/stderr")"
    end=$(date +%s)
    cat "$tmp/stdout"
    [ ! -s "$tmp/stderr" ] || fail "--quiet, yet on stderr: $(cat "$tmp/stderr")"
    grep -Eq '^model +test errors +accuracy +epochs +train time$' "$tmp/stdout" \
        || fail "no table header on stdout"
    python3 - "$tmp/out.json" "$tmp/stdout" <<'EOF'
import json, sys

with open(sys.argv[1]) as f:
    report = json.load(f)
with open(sys.argv[2]) as f:
    table = f.read().splitlines()

def check(condition, message):
    if not condition:
        sys.exit(f"check failed: {message}")

check(report["train_count"] == 10000, f"train_count {report['train_count']}, not 10000")
check(report["test_count"] == 10000, f"test_count {report['test_count']}, not 10000")
check(report["transfer_count"] == 10000, f"transfer_count {report['transfer_count']}, not 10000")
models = report["models"]
check(sorted(models) == ["baseline", "distilled", "teacher"], f"models: {sorted(models)}")
for name, model in models.items():
    errors = model["test_errors"]
    check(type(errors) is int and 0 <= errors <= 10000, f"{name}: test_errors {errors!r}")
    want = 6 if name == "teacher" else 3
    check(model["epochs"] == want, f"{name}: {model['epochs']} epochs, --quick means {want}")
    check(abs(model["accuracy"] - (1 - errors / 10000)) < 1e-6, f"{name}: accuracy {model['accuracy']}")
    check(model["loaded"] is False, f"{name}: loaded")
    rows = [line.split() for line in table if line.startswith(name + " ")]
    check(len(rows) == 1 and rows[0][2] == str(errors), f"{name}: the table says {rows}")
    print(f"{name}: {errors} test errors, {model['train_seconds']:.1f} s of training")
check(models["teacher"]["widths"] == [784, 1200, 1200, 10], f"teacher widths {models['teacher']['widths']}")
teacher = 1 - models["teacher"]["test_errors"] / 10000
check(teacher > 0.5, f"teacher accuracy {teacher} (chance is 0.1)")
EOF
    echo "kd-mnist --quick: $((end - start)) s"
}

case $mode in
bad-input) bad_input ;;
quick) quick "${3:-}" ;;
*) fail "$usage" ;;
esac
echo "$name: all checks passed"
