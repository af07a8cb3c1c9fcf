#!/usr/bin/env bash
# Installs NVIDIA's perf_analyzer 2.44.0 (the C++ client) as $VENV/bin/perf_analyzer_cpp, the way the
# shared peers harness does (bench/peers/setup.sh):
#   * the binary comes from the tritonclient 2.44.0 wheel (the last one that ships it), fetched with
#     `pip download --no-deps` and unpacked into .cache/perf_analyzer/;
#   * it links libb64.so.0d (Debian package libb64-0d, apt-get installed when missing and we are root)
#     and libcudart.so.12 (the nvidia-cuda-runtime-cu12 wheel, pip installed into the venv; no GPU needed);
#   * $VENV/bin/perf_analyzer_cpp is a wrapper that sets LD_LIBRARY_PATH and execs the binary.
# The distinct name matters: tritonclient[all] >= 2.45 pulls the `perf-analyzer` pip package, whose
# `perf_analyzer` entry point in $VENV/bin is not this binary.
# Idempotent: does nothing when the wrapper already runs. Prints the wrapper's path on success.
# Environment: VENV (default ./.venv, must exist), PA_CACHE (default ./.cache/perf_analyzer).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
CACHE="${PA_CACHE:-$ROOT/.cache/perf_analyzer}"
PY="$VENV/bin/python"
WRAPPER="$VENV/bin/perf_analyzer_cpp"
BIN="$CACHE/perf_analyzer"
PIP_OPTS=(--disable-pip-version-check --timeout 30 --retries 2 -q)

log() { printf '[install_perf_analyzer] %s\n' "$*" >&2; }

works() { "$WRAPPER" --version 2>&1 | grep "Perf Analyzer Version 2.44" >/dev/null; }  # prints to stderr

[ -x "$PY" ] || { log "no venv at $VENV (create it first)"; exit 1; }
if [ -x "$WRAPPER" ] && works; then
  echo "$WRAPPER"; exit 0
fi
mkdir -p "$CACHE"

# ---- libb64.so.0d (Debian libb64-0d)
if ! ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install libb64-0d"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libb64-0d; } \
      >"$CACHE/apt.log" 2>&1 || { log "apt-get failed (see $CACHE/apt.log)"; exit 1; }
  else
    log "libb64.so.0d is missing and we are not root: run 'apt-get install libb64-0d' as root"; exit 1
  fi
fi

# ---- libcudart.so.12 (nvidia-cuda-runtime-cu12 wheel, in the venv)
cudart_dir() {
  "$PY" -c 'import os, nvidia.cuda_runtime as m; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null
}
CUDART="$(cudart_dir || true)"
if [ -z "$CUDART" ] || [ ! -e "$CUDART/libcudart.so.12" ]; then
  log "pip install nvidia-cuda-runtime-cu12 (libcudart.so.12)"
  "$PY" -m pip install "${PIP_OPTS[@]}" 'nvidia-cuda-runtime-cu12>=12.0,<13' >&2
  CUDART="$(cudart_dir)"
fi
[ -e "$CUDART/libcudart.so.12" ] || { log "libcudart.so.12 not found in $CUDART"; exit 1; }

# ---- the binary, from the tritonclient 2.44.0 wheel
if [ ! -x "$BIN" ]; then
  log "pip download --no-deps tritonclient==2.44.0"
  rm -rf "$CACHE/dl"
  "$PY" -m pip download "${PIP_OPTS[@]}" --no-deps --only-binary=:all: 'tritonclient==2.44.0' -d "$CACHE/dl" >&2
  "$PY" - "$CACHE/dl" "$BIN" <<'PY'
import glob, os, shutil, sys, zipfile
(whl,) = glob.glob(os.path.join(sys.argv[1], "tritonclient-2.44.0-*.whl"))
with zipfile.ZipFile(whl) as z, z.open("tritonclient-2.44.0.data/data/bin/perf_analyzer") as src, \
        open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
PY
  rm -rf "$CACHE/dl"
fi
if LD_LIBRARY_PATH="$CUDART" ldd "$BIN" | grep -q "not found"; then
  log "perf_analyzer has unresolved libraries:"; LD_LIBRARY_PATH="$CUDART" ldd "$BIN" | grep "not found" >&2; exit 1
fi

# ---- the wrapper
cat >"$WRAPPER.tmp" <<EOF
#!/bin/sh
# perf_analyzer 2.44.0 (C++), installed by scripts/install_perf_analyzer.sh
LD_LIBRARY_PATH="$CUDART\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
exec "$BIN" "\$@"
EOF
chmod 755 "$WRAPPER.tmp"
mv "$WRAPPER.tmp" "$WRAPPER"
works || { log "$WRAPPER --version failed"; "$WRAPPER" --version >&2 || true; rm -f "$WRAPPER"; exit 1; }
log "installed: $("$WRAPPER" --version 2>&1 | head -1)"
echo "$WRAPPER"
