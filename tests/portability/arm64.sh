#!/usr/bin/env bash
# The shipped bundle on 64-bit ARM, checked on an x86-64 Debian/Ubuntu host under qemu-user emulation.
#
#   sudo tests/portability/arm64.sh [RESULTS_DIR]     # default benchmarks/results/arm64-emulated-<today>
#
# 1. Builds (once, then cached in $HASHTAG_CACHE/arm64-root) a Debian bookworm arm64 root with Debian's
#    own packages: debootstrap, qemu-user-static through binfmt_misc; python3 + venv from Debian.
# 2. Installs this checkout twice with `pip install <repo>` (base install, no extras, PyPI wheels): in a
#    venv on the host (x86-64, the reference) and in a venv in the arm64 root (aarch64 wheels), the aarch64
#    side pinned to the versions the host resolved, so both run the same onnxruntime/numpy/pillow/click.
# 3. Runs `hashtag models`, `hashtag predict --json` and `hashtag predict --fast --precision fp32 --json` (the
#    fast model alone, in FP32 on both sides: its INT8 kernels round differently on x86 without VNNI and on
#    ARM, and each CPU kind may pick another precision) with the default bundle on the same photos on both sides:
#    grace_hopper.jpg from matplotlib plus N photos of the test split of ../shared/corpus, copied in for
#    the run only (never into the repo). The aarch64 side runs once per emulated CPU, side by side:
#    cortex-a72 (Raspberry Pi 4: NEON, no dot product) and cortex-a76 (Pi 5, RK3588, and like Jetson
#    Orin's A78AE: dot product), since ONNX Runtime picks its INT8 kernels from those features (qemu
#    reports them in the auxiliary vector); HASHTAG_ARM64_CPUS="cortex-a72 cortex-a76 max" adds qemu's
#    max (dot product, i8mm, SVE).
# 4. Compares each aarch64 run with x86-64 (hashtags of the ensemble and of every model identical on every
#    photo, largest per-tag probability difference <= TOLERANCE), and writes RESULTS_DIR: README.md,
#    summary.json, photos.tsv (names and hashes, not the photos), per-side predict.jsonl / models.txt /
#    env.json (versions, CPU features, bundle files) / rss.json (peak RSS).
# Every step but the installs and `hashtag` itself is `python -m portability` (this folder's package, run
# from each side's copy of the checkout with PYTHONPATH=<copy>/tests; tested by tests/test_arm64_compare.py).
# No timing is recorded: under emulation it says nothing about a real board.
#
# Needs root (debootstrap, chroot, mounts) and the network (Debian mirror, PyPI). Building the root takes a
# few minutes and is done once (~250 MB); each run then spends about 2.5 minutes on setup (both installs,
# from pip's cache) and the rest on emulated inference, about 30 minutes on a 2-core machine (the
# Cortex-A72 run, without dot-product instructions, is the long one). HASHTAG_ARM64_PHOTOS=5 or
# HASHTAG_ARM64_CPUS=cortex-a76 shortens it.
# Everything it mounts is unmounted on exit, its temporary files are removed, binfmt_misc is left as found.
# Exit status: 0 when every comparison is OK, 1 when one differs, 2 on a setup error.
#
# Environment: HASHTAG_CACHE (default ~/.cache/hashtag), HASHTAG_CORPUS (default ../shared/corpus beside
# the checkout), HASHTAG_ARM64_PHOTOS (corpus photos, default 20), HASHTAG_ARM64_CPUS (default
# "cortex-a72 cortex-a76"), HASHTAG_ARM64_MIRROR (default http://deb.debian.org/debian),
# HASHTAG_HOST_PYTHON (default python3), TOLERANCE (default 0.02).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${HASHTAG_CACHE:-$HOME/.cache/hashtag}
ROOTFS=$CACHE/arm64-root
SUITE=bookworm
MIRROR=${HASHTAG_ARM64_MIRROR:-http://deb.debian.org/debian}
ROOT_PACKAGES=python3,python3-venv,ca-certificates,time
ROOT_STAMP="hashtag arm64 root v1: $SUITE minbase +$ROOT_PACKAGES"
CPUS=${HASHTAG_ARM64_CPUS:-cortex-a72 cortex-a76}
N_PHOTOS=${HASHTAG_ARM64_PHOTOS:-20}
CORPUS=${HASHTAG_CORPUS:-$(dirname "$REPO")/shared/corpus}
HOST_PYTHON=${HASHTAG_HOST_PYTHON:-python3}
TOLERANCE=${TOLERANCE:-0.02}
OUT=$(realpath -m "${1:-$REPO/benchmarks/results/arm64-emulated-$(date -u +%F)}")  # absolute: steps cd elsewhere
RUN_IN_ROOT=/tmp/hashtag-run          # this run's files inside the root (removed on exit)
RUN=$ROOTFS$RUN_IN_ROOT

unset HASHTAG_MODELS                  # the default bundle: the one shipped in the package, on both sides
log() { printf '[arm64 %s] %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
[ "$(uname -m)" = x86_64 ] || die "meant for an x86-64 host (it compares aarch64 with x86-64); this is $(uname -m)"

# ------------------------------------------------------------------------------ cleanup, always
MOUNTED=()              # mount points to unmount, in reverse order
JOBS=()                 # background jobs (the emulated runs) to stop on an early exit
HOST_TMP=""
BINFMT_MOUNTED=0        # we mounted binfmt_misc: unmount it again
BINFMT_REGISTERED=0     # we registered qemu-aarch64 in an existing binfmt_misc: unregister it again
kill_tree() {  # kill_tree PID: that process and its descendants (by id)
    local c
    for c in $(pgrep -P "$1"); do kill_tree "$c"; done
    kill "$1" 2>/dev/null
}
cleanup() {
    local rc=$? i
    set +e
    for i in "${JOBS[@]}"; do kill_tree "$i"; done
    [ ${#JOBS[@]} -gt 0 ] && sleep 1
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}"
    done
    # anything a failed debootstrap or chroot step left mounted under the root
    for d in "$ROOTFS" "$ROOTFS.partial"; do
        awk -v r="$d/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
    done
    [ -n "$HOST_TMP" ] && rm -rf "$HOST_TMP"
    [ -d "$ROOTFS" ] && rm -rf "$RUN"
    rm -rf "$ROOTFS.partial"
    [ "$BINFMT_REGISTERED" = 1 ] && echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64
    [ "$BINFMT_MOUNTED" = 1 ] && umount /proc/sys/fs/binfmt_misc
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_in_root() {  # mount_in_root ARGS... TARGET: mount and remember for cleanup
    mount "$@"
    MOUNTED+=("${!#}")
}

mkdir -p "$CACHE"
exec 9> "$CACHE/arm64.lock"
flock -n 9 || die "another run is using $CACHE (lock $CACHE/arm64.lock)"

# ------------------------------------------------------------------------------ host tools, binfmt
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
    BINFMT_MOUNTED=1
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then   # write the register string ourselves (F: fix binary)
        echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
            > /proc/sys/fs/binfmt_misc/register
    fi
    [ "$BINFMT_MOUNTED" = 1 ] || BINFMT_REGISTERED=1
fi
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt entry is disabled"
QEMU_INTERP=$(awk '$1 == "interpreter" {print $2}' /proc/sys/fs/binfmt_misc/qemu-aarch64)
QEMU_FIXED=$(awk '$1 == "flags:" {print ($2 ~ /F/) ? 1 : 0}' /proc/sys/fs/binfmt_misc/qemu-aarch64)
QEMU_VERSION=$(/usr/bin/qemu-aarch64-static --version | head -1)

copy_interpreter_if_needed() {  # without the F flag the interpreter must exist inside the root
    if [ "$QEMU_FIXED" != 1 ]; then
        install -D -m 755 /usr/bin/qemu-aarch64-static "$1$QEMU_INTERP"
    fi
}

setup_root_files() {  # DNS and the host's locally added CA certificates (pip needs them for TLS)
    cp -L /etc/resolv.conf "$1/etc/resolv.conf"
    local cas=/usr/local/share/ca-certificates
    if [ -d "$cas" ] && ! diff -rq "$cas" "$1$cas" >/dev/null 2>&1; then   # (emulated, it takes half a minute)
        rm -rf "${1:?}$cas" && mkdir -p "$1$cas" && cp -rL "$cas/." "$1$cas/"
        chroot "$1" /usr/sbin/update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in the root"
    fi
}

# ------------------------------------------------------------------------------ the arm64 root (cached)
if [ "$(cat "$ROOTFS/.hashtag-root" 2>/dev/null)" != "$ROOT_STAMP" ]; then
    log "building the arm64 root in $ROOTFS (debootstrap $SUITE; the emulated second stage takes a while)"
    rm -rf "$ROOTFS" "$ROOTFS.partial"
    mkdir -p "$CACHE"
    if [ "$QEMU_FIXED" != 1 ]; then copy_interpreter_if_needed "$ROOTFS.partial"; fi
    debootstrap --arch=arm64 --variant=minbase --include="$ROOT_PACKAGES" "$SUITE" "$ROOTFS.partial" "$MIRROR" \
        > "$CACHE/arm64-debootstrap.log" 2>&1 || die "debootstrap failed, see $CACHE/arm64-debootstrap.log"
    rm -rf "$ROOTFS.partial/var/cache/apt/archives/"*.deb
    echo "$ROOT_STAMP" > "$ROOTFS.partial/.hashtag-root"
    mv "$ROOTFS.partial" "$ROOTFS"
else
    log "reusing the arm64 root in $ROOTFS"
fi
copy_interpreter_if_needed "$ROOTFS"
setup_root_files "$ROOTFS"

# ------------------------------------------------------------------------------ this checkout, twice
HOST_TMP=$(mktemp -d /tmp/hashtag-arm64.XXXXXX)
rm -rf "$RUN"
mkdir -p "$RUN/src" "$RUN/photos" "$HOST_TMP/src"
snapshot() {  # the checkout's files (tracked, and untracked that git does not ignore) into $1
    if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
        (cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$1"
    else
        (cd "$REPO" && tar --exclude=./.git -cf - .) | tar -xf - -C "$1"
    fi
}
snapshot "$HOST_TMP/src"
snapshot "$RUN/src"
COMMIT=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)
[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || COMMIT="$COMMIT (with uncommitted changes)"

log "x86-64: pip install <repo> in a venv ($("$HOST_PYTHON" --version 2>&1))"
"$HOST_PYTHON" -m venv "$HOST_TMP/venv"
HX="$HOST_TMP/venv/bin"
"$HX/python" -m pip install -q "$HOST_TMP/src" || die "pip install on the host failed"
"$HX/python" -m pip freeze --exclude hashtag > "$RUN/constraints.txt"
CHECK=(env PYTHONPATH="$HOST_TMP/src/tests" "$HX/python" -m portability)   # this folder's package, from the copy

# ------------------------------------------------------------------------------ the photos (run time only)
GRACE="$CACHE/photos/grace_hopper.jpg"
if [ ! -s "$GRACE" ]; then
    mkdir -p "$CACHE/photos"
    if ! "$HOST_PYTHON" -c 'import shutil, sys, matplotlib.cbook as c
shutil.copyfile(c.get_sample_data("grace_hopper.jpg", asfileobj=False), sys.argv[1])' "$GRACE" 2>/dev/null; then
        log "fetching matplotlib's sample photo grace_hopper.jpg from its wheel"
        "$HX/python" -m pip download -q --no-deps --only-binary=:all: -d "$HOST_TMP/mpl" matplotlib
        "$HX/python" - "$HOST_TMP"/mpl/matplotlib-*.whl "$GRACE" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    name = next(n for n in z.namelist() if n.endswith("sample_data/grace_hopper.jpg"))
    open(sys.argv[2], "wb").write(z.read(name))
EOF
    fi
fi
if [ ! -d "$CORPUS/images" ]; then
    log "warning: no corpus at $CORPUS: only grace_hopper.jpg is compared"
    N_PHOTOS=0
fi

rm -rf "$OUT"
mkdir -p "$OUT/x86_64"
"${CHECK[@]}" select-photos "$CORPUS" "$RUN/photos" --n "$N_PHOTOS" --extra "$GRACE" > "$OUT/photos.tsv"
log "$(($(wc -l < "$OUT/photos.tsv") - 1)) photos"

# ------------------------------------------------------------------------------ x86-64 reference
log "x86-64: hashtag models, hashtag predict --json"
(
    cd "$HOST_TMP"
    "$HX/hashtag" models > "$OUT/x86_64/models.txt"
    "${CHECK[@]}" env "$OUT/x86_64/env.json"
    "${CHECK[@]}" peak-rss "$OUT/x86_64/rss.json" --key predict --stdout "$OUT/x86_64/predict.jsonl" -- \
        "$HX/hashtag" predict --json "$RUN/photos"
    "${CHECK[@]}" peak-rss "$OUT/x86_64/rss.json" --key baseline -- "$HX/python" -c pass
    "$HX/hashtag" predict --fast --precision fp32 --json "$RUN/photos" > "$OUT/x86_64/predict-fast.jsonl"
) || die "the x86-64 reference run failed"
MANIFEST=$("$HX/python" -c 'import hashtag.models, pathlib; print(pathlib.Path(hashtag.models.__file__).parent / "manifest.json")')

# ------------------------------------------------------------------------------ aarch64, emulated
mount_in_root -t proc proc "$ROOTFS/proc"
mount_in_root --bind /dev "$ROOTFS/dev"       # /sys is deliberately not mounted: onnxruntime crashes under qemu with it
in_root() {  # in_root QEMU_CPU CMD...: run CMD in the root with a clean environment
    local cpu=$1
    shift
    chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 QEMU_CPU="$cpu" "$@"
}
AV=$RUN_IN_ROOT/venv/bin
AV_CHECK=(PYTHONPATH="$RUN_IN_ROOT/src/tests" "$AV/python" -m portability)   # in_root passes the variable to env
log "aarch64: pip install <repo> in a venv (PyPI aarch64 wheels, pinned to the host's versions)"
in_root max /usr/bin/python3 -m venv "$RUN_IN_ROOT/venv"
in_root max "$AV/python" -m pip install -q -c "$RUN_IN_ROOT/constraints.txt" "$RUN_IN_ROOT/src" \
    || die "pip install in the arm64 root failed"

arm_run() {  # arm_run CPU: one emulated CPU's run, in $RUN/CPU (stdout/stderr to files there)
    local cpu=$1 d=$RUN_IN_ROOT/$1
    in_root "$cpu" "$AV/hashtag" models > "$ROOTFS$d/models.txt" || return 1
    in_root "$cpu" "${AV_CHECK[@]}" env "$d/env.json" || return 1
    in_root "$cpu" "${AV_CHECK[@]}" peak-rss "$d/rss.json" --key predict \
        --stdout "$d/predict.jsonl" -- "$AV/hashtag" predict --json "$RUN_IN_ROOT/photos" || return 1
    in_root "$cpu" "${AV_CHECK[@]}" peak-rss "$d/rss.json" --key baseline \
        -- "$AV/python" -c pass || return 1
    in_root "$cpu" "$AV/hashtag" predict --fast --precision fp32 --json "$RUN_IN_ROOT/photos" > "$ROOTFS$d/predict-fast.jsonl"
}
# The emulated CPUs run side by side (each mostly keeps one core busy); their progress is in $RUN/CPU/predict.jsonl.
declare -A JOB_OF
for cpu in $CPUS; do
    mkdir -p "$RUN/$cpu"
    log "aarch64 ($cpu): hashtag models, hashtag predict --json ($(($(wc -l < "$OUT/photos.tsv") - 1)) photos; emulated, slow)"
    arm_run "$cpu" 2> "$RUN/$cpu/stderr.txt" &
    JOB_OF[$cpu]=$!
    JOBS+=("$!")
done
failed=()
for cpu in $CPUS; do
    wait "${JOB_OF[$cpu]}" || failed+=("$cpu")
done
JOBS=()
for cpu in $CPUS; do
    dir="$OUT/aarch64-$cpu"
    mkdir -p "$dir"
    cp "$RUN/$cpu/"* "$dir/"
    if [[ " ${failed[*]} " == *" $cpu "* ]]; then
        log "aarch64 ($cpu) failed; the end of its stderr:"
        tail -20 "$dir/stderr.txt" >&2
        continue
    fi
    "${CHECK[@]}" compare "$OUT/x86_64/predict.jsonl" "$dir/predict.jsonl" --tolerance "$TOLERANCE" \
        --manifest "$MANIFEST" --out "$OUT/compare-$cpu.json" >&2 || true
    "${CHECK[@]}" compare "$OUT/x86_64/predict-fast.jsonl" "$dir/predict-fast.jsonl" --tolerance "$TOLERANCE" \
        --manifest "$MANIFEST" --out "$OUT/compare-fast-$cpu.json" >&2 || true
done

status=0
"${CHECK[@]}" report "$OUT" --meta "commit=$COMMIT" --meta "date=$(date -u +%F)" --meta "qemu=$QEMU_VERSION" \
    --meta "tolerance=$TOLERANCE" >&2 || status=1
log "results in $OUT"
exit "$status"
