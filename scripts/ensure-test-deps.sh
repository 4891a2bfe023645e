#!/usr/bin/env bash
# Makes sure the system packages the tests need are present: Debian's Chromium (browser tests,
# WebGPU through SwiftShader), the Vulkan loader (Dawn in Node runs on Chromium's SwiftShader) and
# wamerican's word list (the demo model's answers are checked against /usr/share/dict/words).
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || [ -n "${CHROMIUM_PATH:-}" ] || missing+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1 ' || missing+=(libvulkan1)
[ -f /usr/share/dict/american-english ] || missing+=(wamerican)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${missing[*]} (apt-get)…"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "the tests need: ${missing[*]} — install them (Debian: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
