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
# QKERNELS_TEST_SMALL=1 (smaller sizes: emulation is 10-20x slower).
# Everything goes under $QK_EMU_CACHE (default /tmp/qk-emu); steps already done are
# skipped, so a rerun costs the build and the test runs only. The aarch64 build happens
# in a copy of the repository ($QK_EMU_CACHE/src-arm64): the working tree's x86 build
# is never touched. Exits non-zero if the build or any lane fails.
#
# Environment: QK_EMU_CACHE; QK_EMU_JOBS (lanes at a time, default nproc); QK_EMU_TESTS (test paths relative to the repository or
# absolute, default the kernel tests: test_ukernels, test_gemm_kernels, test_conv, test_float,
# test_quant_kernels, test_layout, test_dynamic_quant, test_eltwise); QK_EMU_PORTABLE_ONLY (of
# those, the ones the max lane alone runs: default test_eltwise, portable C only); QK_EMU_LANES (default "max a76 a53 x86";
# "none" only sets up and builds); QK_EMU_PYTEST_ARGS (extra pytest arguments).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${QK_EMU_CACHE:-/tmp/qk-emu}
SYSROOT=$CACHE/sysroot-arm64          # aarch64 Debian files (python3.11, libc, libgomp, ...)
SITE=$CACHE/site-arm64                # aarch64 wheels -> PYTHONPATH
APTROOT=$CACHE/apt-arm64              # private apt state for the arm64 downloads
SRC=$CACHE/src-arm64                  # copy of the repository, built for aarch64
PYARM64=$CACHE/bin/pyarm64            # the aarch64 python under qemu (QEMU_CPU picks the CPU)
TESTS=${QK_EMU_TESTS:-tests/test_ukernels.py tests/test_gemm_kernels.py tests/test_conv.py tests/test_float.py tests/test_quant_kernels.py tests/test_layout.py tests/test_dynamic_quant.py tests/test_eltwise.py}
LANES=${QK_EMU_LANES:-"max a76 a53 x86"}
# Tests of portable C only (no per-ISA code, nothing chosen by the CPU): the max lane runs
# them on aarch64, the other lanes leave them out (the host runs them on x86).
PORTABLE_ONLY=${QK_EMU_PORTABLE_ONLY:-"tests/test_eltwise.py"}
REDUCED=$(for t in $TESTS; do case " $PORTABLE_ONLY " in *" $t "*) ;; *) printf '%s ' "$t" ;; esac; done)
ARM64_DEBS="python3.11-minimal libpython3.11-stdlib libstdc++6 libgomp1"   # libgomp1: -fopenmp
ARM64_WHEELS="numpy pytest hypothesis setuptools cython"
NICE="nice -n 19"
PYTEST_ARGS=(-p no:cacheprovider -q --import-mode=importlib)
# shellcheck disable=SC2206
PYTEST_ARGS+=(${QK_EMU_PYTEST_ARGS:-})

t0=$SECONDS
step() { echo "[$((SECONDS - t0))s] $*"; }
header() { printf '\n========== %s ==========\n' "$*"; }
mkdir -p "$CACHE"/bin

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
    rm -rf "$SYSROOT" "$APTROOT" "$CACHE"/.site-done
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
    echo "$ARM64_DEBS" > "$CACHE"/.sysroot-done
fi

cat > "$PYARM64" <<EOF
#!/bin/sh
exec env PYTHONPATH="$SITE\${PYTHONPATH:+:\$PYTHONPATH}" qemu-aarch64 -L "$SYSROOT" "$SYSROOT"/usr/bin/python3.11 "\$@"
EOF
chmod +x "$PYARM64"

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
        $ARM64_WHEELS 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
    # PYTHONDONTWRITEBYTECODE may be set: byte-compile once, with the host python when it
    # is a 3.11 (same .pyc magic as Debian's 3.11.2), else with the emulated one (slower)
    step "3. byte-compile the aarch64 python and wheels"
    if python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        $NICE python3 -m compileall -q -j 2 "$SYSROOT"/usr/lib/python3.11 "$SITE" >/dev/null || true
    else
        $NICE "$PYARM64" -m compileall -q "$SYSROOT"/usr/lib/python3.11 "$SITE" >/dev/null || true
    fi
    echo "$ARM64_WHEELS" > "$CACHE"/.site-done
fi

# ---- 4. build qkernels for aarch64 in a copy of the repository ----------------------
step "4. copy the repository to $SRC"
mkdir -p "$SRC"
# keep the previous build (build/, generated C, the .so) so that an unchanged .pyx is not
# cythonized again; every other file is copied afresh (deleted files disappear)
find "$SRC" -mindepth 1 -maxdepth 1 ! -name build ! -name kernels ! -name qkernels -exec rm -rf {} +
find "$SRC"/kernels "$SRC"/qkernels -mindepth 1 ! -type d ! -name _native.c ! -name '_native*.so' \
    -delete 2>/dev/null || true
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    # tracked and untracked-but-not-ignored files: the working tree as it is now
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$SRC" -xf -
else
    tar -C "$REPO" --exclude=.git --exclude=build --exclude='*.so' --exclude='*.o' --exclude=__pycache__ \
        --exclude=kernels/_native.c --exclude=qkernels/_native.c -cf - . | tar -C "$SRC" -xf -
fi

step "4. build the extension under the emulated python (it runs the native cross gcc)"
# the sysroot's -I first: setuptools adds -I/usr/include/python3.11 (a guest path, which
# the native gcc would read as the host's amd64 headers)
if ! (cd "$SRC" && CPPFLAGS="-I$SYSROOT/usr/include/python3.11 -I$SYSROOT/usr/include" \
        $NICE "$PYARM64" setup.py -q build_ext --inplace) > "$CACHE"/build.log 2>&1; then
    cat "$CACHE"/build.log
    echo "aarch64 build FAILED"
    exit 1
fi
SO=$(ls "$SRC"/qkernels/_native*aarch64*.so)
step "   built $SO"

# each kernel really uses the instruction it is named after
DIS=$(aarch64-linux-gnu-objdump -d --no-show-raw-insn "$SO")
for insn in smlal sdot smmla; do
    n=$(grep -cw "$insn" <<<"$DIS" || true)
    echo "   objdump: $n x $insn"
    [ "$n" -gt 0 ] || { echo "no $insn in $SO"; exit 1; }
done
n=$(grep -cE 'fmla\s+v[0-9]+\.8h' <<<"$DIS" || true)   # the FP16-arithmetic fp16 kernel
echo "   objdump: $n x fmla .8h"
[ "$n" -gt 0 ] || { echo "no fp16 fmla in $SO"; exit 1; }

# ---- 5. test lanes -------------------------------------------------------------------
# Lanes run $QK_EMU_JOBS at a time (default: the number of cores; qemu-user is mostly one
# host thread), each into its own log, printed in order when all are done.
JOBS=${QK_EMU_JOBS:-$(nproc)}
LOGS=$CACHE/lanes
rm -rf "$LOGS"
mkdir -p "$LOGS"
names=()
run_lane() {   # name, directory, expected ISAs, command...  (in the background)
    local name=$1 dir=$2 expect=$3 i=${#names[@]}
    shift 3
    names+=("$name|$expect")
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    (
        t=$SECONDS rc=0
        (cd "$dir" && QKERNELS_EXPECT_ISAS=$expect QKERNELS_TEST_SMALL=1 $NICE "$@") > "$LOGS/$i.log" 2>&1 || rc=$?
        echo "$rc $((SECONDS - t))" > "$LOGS/$i.rc"
    ) &
}
# Each lane sweeps only the paths its CPU adds over the smaller lanes' CPUs
# (QKERNELS_TEST_ISAS): a53 tests neon and scalar, a76 neondot (and the FP16-arithmetic
# kernel registered under it), max i8mm; a path's code is run on the smallest CPU that has
# it, where an instruction it must not use would fault. Tests without an ISA sweep (the
# automatic choice, detection) run on every lane.
step "5. test lanes ($LANES), $JOBS at a time"
# shellcheck disable=SC2086
for lane in $LANES; do
    case $lane in
    none) ;;
    max) QEMU_CPU=max,sve=off QKERNELS_TEST_ISAS=i8mm run_lane "aarch64 max,sve=off" "$SRC" "i8mm,neondot,neon,scalar" \
            "$PYARM64" -m pytest "${PYTEST_ARGS[@]}" $TESTS ;;
    a76) QEMU_CPU=cortex-a76 QKERNELS_TEST_ISAS=neondot run_lane "aarch64 cortex-a76" "$SRC" "neondot,neon,scalar" \
            "$PYARM64" -m pytest "${PYTEST_ARGS[@]}" $REDUCED ;;
    a53) QEMU_CPU=cortex-a53 run_lane "aarch64 cortex-a53" "$SRC" "neon,scalar" \
            "$PYARM64" -m pytest "${PYTEST_ARGS[@]}" $REDUCED ;;
    x86) # the host python with its installed qkernels (CI installs it before this script):
         # the real binary (qemu cannot load a pyenv shim script), run from a neutral
         # directory so that a source tree without a built .so cannot shadow the package
        PYHOST=$(python3 -c 'import sys; print(sys.executable)')
        x86_tests=()
        for t in $REDUCED; do case $t in /*) x86_tests+=("$t") ;; *) x86_tests+=("$REPO/$t") ;; esac; done
        run_lane "x86_64 Nehalem (no AVX2)" "$CACHE" "scalar" \
            qemu-x86_64 -cpu Nehalem "$PYHOST" -m pytest "${PYTEST_ARGS[@]}" "${x86_tests[@]}" ;;
    *) echo "unknown lane $lane"; exit 2 ;;
    esac
done
wait

failed=()
summary=()
for i in "${!names[@]}"; do
    name=${names[$i]%%|*} expect=${names[$i]#*|}
    read -r rc secs < "$LOGS/$i.rc" || { rc=99 secs=0; }
    header "lane $name: expect ISAs $expect"
    cat "$LOGS/$i.log"
    summary+=("$(printf '%-26s %-26s %-6s %4ds' "$name" "$expect" "$([ "$rc" -eq 0 ] && echo ok || echo "rc=$rc")" "$secs")")
    [ "$rc" -eq 0 ] || failed+=("$name")
done

header "summary ($((SECONDS - t0))s in all)"
[ ${#summary[@]} -eq 0 ] || printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED lanes: ${failed[*]}"
    exit 1
fi
echo "all lanes passed"
