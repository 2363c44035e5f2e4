#!/usr/bin/env bash
# Kernel tests on CPUs this x86-64 machine does not have, under qemu-user
# (recipe: shared/NEON-ON-X86.md; why: DESIGN.md "NEON under emulation").
#
#   aarch64 lanes: an arm64 CPython 3.11 + numpy + pytest unpacked into a private
#   sysroot (the host's dpkg state is never touched), qkernels built for aarch64 by
#   setuptools running under that python (it calls the native cross gcc), then the
#   kernel tests under three emulated CPUs, each exposing a different ISA set:
#       max,sve=off  i8mm, dotprod      -> i8mm,neondot,neon,scalar
#       cortex-a76   dotprod, no i8mm   -> neondot,neon,scalar
#       cortex-a53   plain ASIMD        -> neon,scalar
#   x86 lane: the host python and its installed qkernels under qemu-x86_64 -cpu Nehalem
#   (no AVX2) -> scalar only.
#
# The tests read QKERNELS_EXPECT_ISAS (the ISA paths that must be available) and
# QKERNELS_TEST_SMALL=1 (shrink sizes: emulation is 10-20x slower).
# Everything goes under $QK_EMU_CACHE (default /tmp/qk-emu); steps already done are
# skipped, so reruns cost the build and the test runs only. The aarch64 build happens
# in a copy of the repository ($QK_EMU_CACHE/src-arm64): the working tree's x86 build
# is never touched. Exits non-zero if any lane fails.
#
# Environment: QK_EMU_CACHE, QK_EMU_TESTS (test files, default tests/test_gemm_kernels.py),
# QK_EMU_LANES (default "max a76 a53 x86"), QK_EMU_PYTEST_ARGS (extra pytest arguments).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${QK_EMU_CACHE:-/tmp/qk-emu}
SYSROOT=$CACHE/sysroot-arm64          # aarch64 Debian files (python3.11, libc, libgomp, ...)
SITE=$CACHE/site-arm64                # aarch64 wheels -> PYTHONPATH
APTROOT=$CACHE/apt-arm64              # private apt state for the arm64 downloads
SRC=$CACHE/src-arm64                  # copy of the repository, built for aarch64
TESTS=${QK_EMU_TESTS:-tests/test_gemm_kernels.py}
LANES=${QK_EMU_LANES:-"max a76 a53 x86"}
ARM64_DEBS="python3.11-minimal libpython3.11-stdlib libstdc++6 libgomp1"
ARM64_WHEELS="numpy pytest hypothesis setuptools cython"
NICE="nice -n 19"
PYTEST_ARGS=(-p no:cacheprovider -q --import-mode=importlib)
# shellcheck disable=SC2206
PYTEST_ARGS+=(${QK_EMU_PYTEST_ARGS:-})

t0=$SECONDS
step() { echo "[$((SECONDS - t0))s] $*"; }
header() { printf '\n========== %s ==========\n' "$*"; }
mkdir -p "$CACHE"

# The aarch64 python under qemu; QEMU_CPU picks the emulated CPU.
pyarm64() {
    PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" qemu-aarch64 -L "$SYSROOT" "$SYSROOT"/usr/bin/python3.11 "$@"
}

# ---- 1. host packages --------------------------------------------------------------
if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null \
        && command -v qemu-x86_64 >/dev/null && [ -e /usr/aarch64-linux-gnu/include/stdio.h ]; then
    step "1. host packages: already installed"
else
    step "1. host packages (gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
    $NICE apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $NICE apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null
fi

# ---- 2. arm64 sysroot: private apt state, download only, dpkg -x ------------------
if [ "$(cat "$CACHE"/.sysroot-done 2>/dev/null)" = "$ARM64_DEBS" ]; then
    step "2. arm64 sysroot: cached"
else
    step "2. arm64 sysroot ($ARM64_DEBS; nothing is installed on the host)"
    rm -rf "$SYSROOT" "$APTROOT"
    mkdir -p "$APTROOT"/lists/partial "$APTROOT"/archives/partial "$APTROOT"/cache "$SYSROOT"
    : > "$APTROOT"/status
    cat > "$APTROOT"/apt.conf <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Dir::State::Lists "$APTROOT/lists";
Dir::State::status "$APTROOT/status";
Dir::State::extended_states "$APTROOT/extended_states";
Dir::Cache "$APTROOT/cache";
Dir::Cache::archives "$APTROOT/archives";
EOF
    # empty status => apt resolves the full runtime closure (libc6, libssl3, ...)
    # shellcheck disable=SC2086
    (export APT_CONFIG="$APTROOT"/apt.conf
     $NICE apt-get update -qq
     $NICE apt-get install -y -qq --download-only $ARM64_DEBS >/dev/null
     cd "$APTROOT"/archives && $NICE apt-get download -qq libpython3.11-dev)   # headers, not its deps
    for d in "$APTROOT"/archives/*.deb; do dpkg -x "$d" "$SYSROOT"; done
    # absolute symlinks would resolve into the host's /: make them relative
    (cd "$SYSROOT" && find . -type l -lname '/*' | while read -r l; do
        ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" ".$(readlink "$l")")" "$l"; done)
    rm -f "$CACHE"/.site-done         # byte-compile again below
    echo "$ARM64_DEBS" > "$CACHE"/.sysroot-done
fi

# ---- 3. aarch64 wheels ---------------------------------------------------------------
if [ "$(cat "$CACHE"/.site-done 2>/dev/null)" = "$ARM64_WHEELS" ]; then
    step "3. aarch64 wheels: cached"
else
    step "3. aarch64 wheels ($ARM64_WHEELS)"
    rm -rf "$SITE"
    # shellcheck disable=SC2086
    $NICE python3 -m pip install -q --no-compile --disable-pip-version-check --root-user-action=ignore \
        --target "$SITE" --only-binary=:all: --platform manylinux_2_28_aarch64 \
        --platform manylinux2014_aarch64 --python-version 3.11 --implementation cp --abi cp311 \
        $ARM64_WHEELS
    # PYTHONDONTWRITEBYTECODE may be set: byte-compile once, with the host python when it
    # is a 3.11 (same .pyc magic as Debian's 3.11.2), else with the emulated one
    if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        $NICE python3 -m compileall -q -j 2 "$SYSROOT"/usr/lib/python3.11 "$SITE" >/dev/null || true
    else
        pyarm64 -m compileall -q "$SYSROOT"/usr/lib/python3.11 "$SITE" >/dev/null || true
    fi
    echo "$ARM64_WHEELS" > "$CACHE"/.site-done
fi

# ---- 4. build qkernels for aarch64 in a copy of the repository ----------------------
step "4. copy the repository to $SRC"
mkdir -p "$SRC"
# keep the previous build (build/, generated C, the .so) so that unchanged sources are
# not re-cythonized; everything else is copied afresh
find "$SRC" -mindepth 1 -maxdepth 1 ! -name build ! -name kernels ! -name qkernels -exec rm -rf {} +
find "$SRC"/kernels "$SRC"/qkernels -mindepth 1 ! -name _native.c ! -name '_native*.so' ! -type d -delete 2>/dev/null || true
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$SRC" -xf -
else
    tar -C "$REPO" --exclude=.git --exclude=build --exclude='*.so' --exclude='*.o' \
        --exclude=__pycache__ --exclude=kernels/_native.c --exclude=qkernels/_native.c -cf - . | tar -C "$SRC" -xf -
fi

step "4. build the extension under the emulated python (native cross gcc)"
# -I of the sysroot first: setuptools adds -I/usr/include/python3.11 (a guest path that
# the native gcc would read as the host's headers)
(cd "$SRC" && CPPFLAGS="-I$SYSROOT/usr/include/python3.11 -I$SYSROOT/usr/include" \
    $NICE bash -c "$(declare -f pyarm64); SITE='$SITE' SYSROOT='$SYSROOT' pyarm64 setup.py -q build_ext --inplace") \
    > "$CACHE"/build.log 2>&1 || { cat "$CACHE"/build.log; echo "aarch64 build FAILED"; exit 1; }
SO=$(ls "$SRC"/qkernels/_native*aarch64*.so)
step "   built $(basename "$SO")"

# the kernels really use the instructions they are named after
DIS=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn "$SO")
for insn in smlal sdot smmla; do
    n=$(grep -cw "$insn" <<<"$DIS" || true)
    echo "   objdump: $n x $insn"
    [ "$n" -gt 0 ] || { echo "no $insn in $SO"; exit 1; }
done

# ---- 5. test lanes -------------------------------------------------------------------
failed=()
summary=()
run_lane() {   # name, expected ISAs, command...
    local name=$1 expect=$2 t=$SECONDS rc=0
    shift 2
    header "lane $name: expect ISAs $expect"
    QKERNELS_EXPECT_ISAS=$expect QKERNELS_TEST_SMALL=1 "$@" || rc=$?
    summary+=("$(printf '%-24s %-28s rc=%d %4ds' "$name" "$expect" "$rc" $((SECONDS - t)))")
    [ "$rc" -eq 0 ] || failed+=("$name")
}
for lane in $LANES; do
    case $lane in
    max) (cd "$SRC" && QEMU_CPU=max,sve=off run_lane "aarch64 max,sve=off" "i8mm,neondot,neon,scalar" \
            pyarm64 -m pytest "${PYTEST_ARGS[@]}" $TESTS) || failed+=("$lane") ;;
    a76) (cd "$SRC" && QEMU_CPU=cortex-a76 run_lane "aarch64 cortex-a76" "neondot,neon,scalar" \
            pyarm64 -m pytest "${PYTEST_ARGS[@]}" $TESTS) || failed+=("$lane") ;;
    a53) (cd "$SRC" && QEMU_CPU=cortex-a53 run_lane "aarch64 cortex-a53" "neon,scalar" \
            pyarm64 -m pytest "${PYTEST_ARGS[@]}" $TESTS) || failed+=("$lane") ;;
    x86) # the host python's own qkernels (installed by CI before this script); the real
         # binary, not a pyenv shim script, so qemu can load it
        PYHOST=$(python3 -c 'import sys; print(sys.executable)')
        (cd "$REPO" && run_lane "x86_64 Nehalem (no AVX2)" "scalar" \
            qemu-x86_64 -cpu Nehalem "$PYHOST" -m pytest "${PYTEST_ARGS[@]}" $TESTS) || failed+=("$lane") ;;
    *) echo "unknown lane $lane"; failed+=("$lane") ;;
    esac
done
