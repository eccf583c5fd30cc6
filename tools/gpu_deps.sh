#!/usr/bin/env bash
# Run HERE (the Debian build machine) before a GPU check: downloads the Debian packages whose headers
# the GPU machine (Ubuntu 24.04, no registry) lacks into .gpu-deps/, which git ignores (through
# .git/info/exclude) and the `device` tool carries (carry: [".gpu-deps"]). tools/gpu_check.sh
# unpacks them into a prefix of its build folder; nothing is installed into / there.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libstb-dev libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 libjpeg62-turbo-dev libjpeg62-turbo)
mkdir -p .gpu-deps
grep -qx '.gpu-deps/' .git/info/exclude 2>/dev/null || echo '.gpu-deps/' >> .git/info/exclude
(cd .gpu-deps && apt-get download "${packages[@]}")
ls -l .gpu-deps
