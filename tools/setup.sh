#!/usr/bin/env bash
# Installs every build and test dependency of ivl from Debian's packages. Safe to run twice:
# apt-get skips what is already installed. Needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenblas-dev      # CPU GEMM through CBLAS
  libstb-dev           # stb_image: JPEG/PNG decoding
  nlohmann-json3-dev   # JSON: safetensors headers, config.json
  catch2               # tests (Catch2 2 on Debian 12, Catch2 3 on newer systems; both work)
  libsentencepiece-dev # InternLM2 tokenizer model
  libpcre2-dev         # Unicode regex for the Qwen2 pre-tokenizer
  libutf8proc-dev      # NFC normalisation before byte-level BPE
  libjpeg62-turbo-dev  # JPEG decoding bit-identical to Pillow's (libjpeg-turbo, islow IDCT, fancy upsampling)
)

# `--fuzz` adds what `make fuzz` needs: clang with its libFuzzer and sanitizer runtimes.
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang libclang-rt-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all dependencies already installed"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
