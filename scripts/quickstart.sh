#!/usr/bin/env bash
# README command 1: install dependencies, build, and run the main job.
#   scripts/quickstart.sh [MODEL_DIR CALIB_FILE EVAL_FILE [SEQLEN]]
# Without arguments the embedded default compresses ../shared/models/manpage-llama-27m with
# ../shared/text/man_calib.txt when present, otherwise a small random LLaMA checkpoint generated
# here (it says so). Then it validates, inspects and evaluates the result next to the original.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build -DCMAKE_BUILD_TYPE=Release
B=./build/tools/spqr
SHARED=${SPQR_SHARED_DIR:-../shared}
if [ $# -ge 3 ]; then
  MODEL=$1 CALIB=$2 EVAL=$3 SEQ=${4:-2048}
elif [ -d "$SHARED/models/manpage-llama-27m" ]; then
  MODEL=$SHARED/models/manpage-llama-27m CALIB=$SHARED/text/man_calib.txt EVAL=$SHARED/text/man_heldout.txt SEQ=512
  echo "== default: the shared manpage-llama-27m model, calibrated on man_calib.txt =="
else
  echo "== no model given and $SHARED is absent: generating a small random LLaMA checkpoint in build/tiny-llama"
  echo "   (this only demonstrates the pipeline; pass MODEL_DIR CALIB_FILE EVAL_FILE to compress a real model) =="
  $B make-tiny-model build/tiny-llama
  MODEL=build/tiny-llama CALIB=build/tiny-llama/calib.u32 EVAL=build/tiny-llama/eval.u32 SEQ=64
fi
OUT=build/$(basename "$MODEL").spqr
$B compress "$MODEL" --calib "$CALIB" --seqlen "$SEQ" -o "$OUT"
$B validate "$OUT"
$B inspect "$OUT"
$B eval "$MODEL" --text "$EVAL" --seqlen "$SEQ" --max-windows 200
$B eval "$OUT" --text "$EVAL" --seqlen "$SEQ" --max-windows 200
