#!/usr/bin/env bash
# README command 1: install dependencies, build, and run the main job on its embedded default.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build -DCMAKE_BUILD_TYPE=Release
exec ./build/tools/spqr demo build/demo.spqr
