#!/usr/bin/env bash
# Installs what spqr needs on a fresh Debian 12 machine (idempotent: quick when all is present).
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev zstd
      libopenblas-dev liblapacke-dev libzstd-dev libjansson-dev libxxhash-dev libcmocka-dev python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The CUDA toolkit is optional: /usr/local/cuda is used when present (GPU kernels are then built).
