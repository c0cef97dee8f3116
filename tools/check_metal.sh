#!/usr/bin/env bash
# The Metal backend on Linux (issue 14): type-checks every .mm file of cpp/backends/metal with
# -Werror against the macOS SDK subset (Metal, MetalPerformanceShaders, Foundation headers; see
# $MACOS_SDK/README.md), then compiles the C++ core the backend needs (cpp/core, cpp/graph,
# backends/registry.cpp with only the Metal backend) and the backend for arm64-apple-macos, and
# links them STRICTLY into a Mach-O dylib: no -undefined dynamic_lookup, every symbol bound
# two-level to a real SDK stub (Metal, MetalPerformanceShaders, Foundation, libobjc, libc++,
# libSystem). Nothing here runs Metal: no Mac is involved.
#
#   tools/check_metal.sh [--install-compiler]   exit 0 = every file type-checks and the strict link
#                                               passes (or no SDK subset: skipped, said so)
#   --install-compiler: apt-get install clang-22 lld-22 when missing (CI; needs root or sudo -n)
#   env: MACOS_SDK=<dir with check.sh and sdk/>  (default /work/shared/tools/macos-sdk, else
#        ../shared/tools/macos-sdk next to the repository), MACOS_MIN (default 11.0, the arm64
#        wheel floor; the SDK's linker stubs are macOS 12.0, so newer API fails loudly),
#        JOBS (default 2), CLANGXX (default clang++-22)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SDK_DIR="${MACOS_SDK:-/work/shared/tools/macos-sdk}"
if [ ! -d "$SDK_DIR/sdk" ] && [ -d "$ROOT/../shared/tools/macos-sdk/sdk" ]; then
  SDK_DIR="$ROOT/../shared/tools/macos-sdk"
fi
if [ ! -d "$SDK_DIR/sdk" ]; then
  echo "check_metal: SKIPPED: no macOS SDK subset (a directory with sdk/) at $SDK_DIR" \
       "(\$MACOS_SDK, default /work/shared/tools/macos-sdk) or ../shared/tools/macos-sdk; the Metal backend was not checked"
  exit 0
fi
if [ "${1:-}" = "--install-compiler" ] && ! { command -v clang++-22 && command -v ld64.lld-22; } >/dev/null &&
   command -v apt-get >/dev/null; then
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
  echo "== installing clang-22 lld-22 (apt-get)"
  "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" apt-get install -y -qq clang-22 lld-22 >/dev/null
fi
CLANGXX="${CLANGXX:-$(command -v clang++-22 || true)}"
if [ -z "$CLANGXX" ] || ! command -v ld64.lld-22 >/dev/null; then
  echo "check_metal: FAIL: clang++-22 and ld64.lld-22 are needed (apt-get install -y clang-22 lld-22)" >&2
  exit 1
fi
NM="$(command -v llvm-nm-22 || command -v llvm-nm)"
MACOS_MIN="${MACOS_MIN:-11.0}"
JOBS="${JOBS:-2}"
OUT="$ROOT/build/metal-check"
mkdir -p "$OUT"

# Some copies of the SDK subset have their symlinks (Headers -> Versions/Current/Headers, ...)
# turned into small text files holding the link target. Such a copy is repaired once into
# build/metal-check/macos-sdk (restoring each link whose target exists); the original is not touched.
if [ ! -d "$SDK_DIR/sdk/System/Library/Frameworks/Foundation.framework/Headers" ]; then
  fixed="$OUT/macos-sdk"
  if [ ! -f "$fixed/.repaired" ]; then
    echo "== repairing flattened symlinks of $SDK_DIR into $fixed"
    rm -rf "$fixed"
    cp -r "$SDK_DIR" "$fixed"
    chmod -R u+w "$fixed"
    python3 - "$fixed/sdk" <<'EOF'
import os, sys
root = sys.argv[1]
cands = []
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        if os.path.islink(p) or os.path.getsize(p) > 300:
            continue
        try:
            t = open(p, "rb").read().decode()
        except UnicodeDecodeError:
            continue
        if t and "\n" not in t and " " not in t and not t.startswith(("/", "#")):
            cands.append((p, t))
changed, made = True, 0
while changed:  # links to links (Headers -> Versions/Current/Headers, Current -> A) resolve in rounds
    changed, rest = False, []
    for p, t in cands:
        target = os.path.join(os.path.dirname(p), t)
        if os.path.exists(target) and os.path.realpath(target) != os.path.realpath(p):
            os.remove(p)
            os.symlink(t, p)
            changed, made = True, made + 1
        else:
            rest.append((p, t))
    cands = rest
print(f"   restored {made} symlinks ({len(cands)} dangling ones left as they were)")
EOF
    touch "$fixed/.repaired"
  fi
  SDK_DIR="$fixed"
fi
S="$SDK_DIR/sdk"
echo "== SDK: $SDK_DIR  compiler: $("$CLANGXX" --version | head -1)  target: arm64-apple-macos$MACOS_MIN"

# The flags of $MACOS_SDK/check.sh, without its sub-framework path: as with Xcode without modules,
# only the umbrella <MetalPerformanceShaders/MetalPerformanceShaders.h> may be included.
TARGET=(-target "arm64-apple-macos$MACOS_MIN" -isysroot "$S")
CXXFLAGS=(-std=c++17 -fblocks -nostdinc++ -isystem "$S/usr/include/c++/v1" -iframework "$S/System/Library/Frameworks"
          -I"$ROOT/cpp" -Wall -Wextra -Wno-unused-parameter -O0)
# The backend's own files must be warning-free; the core keeps its Linux build's warning flags.
MMFLAGS=(-x objective-c++ -fobjc-arc -Werror)

MM=(cpp/backends/metal/*.mm)
echo "== 1. type-check ${#MM[@]} .mm files with -Werror"
for f in "${MM[@]}"; do
  "$CLANGXX" -fsyntax-only "${TARGET[@]}" "${MMFLAGS[@]}" "${CXXFLAGS[@]}" "$f"
  echo "   ok $f"
done
# No Objective-C outside the backend's own .mm files and its Objective-C bridge header.
if grep -lE '^\s*(#import|@interface|@protocol)' $(find cpp -name '*.h' -o -name '*.cpp') |
   grep -v '^cpp/backends/metal/objc_bridges.h$'; then
  echo "   FAIL: Objective-C in a header or .cpp file other code includes (above)"; exit 1
fi

# The C++ core the backend links against, built for the Mac target too, so that the link is
# strict for the core's symbols as well (the CPU and CUDA backends and the Python bindings are
# not part of it).
CORE=(cpp/core/*.cpp cpp/graph/*.cpp cpp/graph/ops/*.cpp cpp/graph/passes/*.cpp cpp/backends/registry.cpp)
echo "== 2. compile ${#CORE[@]} core sources + ${#MM[@]} backend sources for arm64-apple-macos$MACOS_MIN (-j$JOBS)"
LAUNCH=()
if command -v ccache >/dev/null; then LAUNCH=(ccache); fi
compile() {  # source -> object under $OUT/obj
  local src="$1" obj="$OUT/obj/${1//\//_}.o"
  local extra=()
  case "$src" in *.mm) extra=("${MMFLAGS[@]}") ;; cpp/backends/registry.cpp) extra=(-DMPSNN_WITH_METAL=1) ;; esac
  "${LAUNCH[@]}" "$CLANGXX" "${TARGET[@]}" "${extra[@]}" "${CXXFLAGS[@]}" -c "$src" -o "$obj" || { echo "   FAIL $src"; return 1; }
}
export -f compile
export CLANGXX OUT
export TARGET_S="${TARGET[*]}" CXXFLAGS_S="${CXXFLAGS[*]}" MMFLAGS_S="${MMFLAGS[*]}" LAUNCH_S="${LAUNCH[*]}"
rm -rf "$OUT/obj" && mkdir -p "$OUT/obj"
printf '%s\n' "${CORE[@]}" "${MM[@]}" | xargs -P "$JOBS" -I{} bash -c '
  read -r -a TARGET <<< "$TARGET_S"; read -r -a CXXFLAGS <<< "$CXXFLAGS_S"; read -r -a MMFLAGS <<< "$MMFLAGS_S"
  read -r -a LAUNCH <<< "$LAUNCH_S"; compile "$1"' _ {}

echo "== 3. strict -dynamiclib -> $OUT/libmpsnn_metal.dylib"
"$CLANGXX" "${TARGET[@]}" -fuse-ld=lld -dynamiclib "$OUT"/obj/*.o -framework Metal -framework MetalPerformanceShaders \
  -framework Foundation -lc++ -install_name @rpath/libmpsnn_metal.dylib -o "$OUT/libmpsnn_metal.dylib" 2> "$OUT/link.log" ||
  { grep -E 'error' "$OUT/link.log" | head -30; echo "   FAIL: the strict link"; exit 1; }
file "$OUT/libmpsnn_metal.dylib" | sed 's/^[^:]*: /   /'
file "$OUT/libmpsnn_metal.dylib" | grep -q NOUNDEFS || { echo "   FAIL: no MH_NOUNDEFS"; exit 1; }
if "$NM" -m -u "$OUT/libmpsnn_metal.dylib" | grep 'dynamically looked up'; then
  echo "   FAIL: flat-lookup symbols"; exit 1
fi
"$NM" -m -u "$OUT/libmpsnn_metal.dylib" | sed -nE 's/.*\(from ([^)]+)\)/\1/p' | sort | uniq -c |
  awk '{printf "   %4d symbols bound to %s\n", $1, $2}'
# Every MPSNN node class the table names is bound (a misspelt or missing class fails the link).
classes=$("$NM" -m -u "$OUT/libmpsnn_metal.dylib" | grep -oE '_OBJC_CLASS_\$_MPS[A-Za-z0-9]+Node\b' | sort -u | wc -l)
echo "   $classes MPS node classes referenced"
# Negative control: the same link with one reference to a class MPS does not have must fail.
printf '%s\n' '#import <MetalPerformanceShaders/MetalPerformanceShaders.h>' \
  '@interface MPSCNNNotARealNode : MPSNNFilterNode' '@end' \
  'extern "C" void* mpsnn_metal_probe(void) { return (__bridge void*)[MPSCNNNotARealNode class]; }' > "$OUT/probe.mm"
"$CLANGXX" "${TARGET[@]}" "${MMFLAGS[@]}" "${CXXFLAGS[@]}" -Wno-objc-missing-super-calls -c "$OUT/probe.mm" -o "$OUT/probe.o"
if "$CLANGXX" "${TARGET[@]}" -fuse-ld=lld -dynamiclib "$OUT"/obj/*.o "$OUT/probe.o" -framework Metal \
     -framework MetalPerformanceShaders -framework Foundation -lc++ -o "$OUT/probe.dylib" > "$OUT/probe.log" 2>&1; then
  echo "   FAIL: the negative control linked (the link is not strict)"; exit 1
fi
grep -q 'undefined symbol: .*MPSCNNNotARealNode' "$OUT/probe.log" ||
  { cat "$OUT/probe.log"; echo "   FAIL: the negative control failed for another reason"; exit 1; }
echo "   negative control: a made-up MPS class fails the same link (undefined symbol), as it must"
echo "== check_metal: PASS"
