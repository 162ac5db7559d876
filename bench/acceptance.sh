#!/usr/bin/env bash
# Issue 4 acceptance table on the shared model: perplexity (held-out man pages, seqlen 512, 200
# windows), exact bits per parameter of the quantized linears (spqr inspect --json) and
# compression time, for the original and each configuration. Usage: bench/acceptance.sh [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
S=${SPQR_SHARED_DIR:-../shared}
M=$S/models/manpage-llama-27m
CAL=$S/text/man_calib.tokens.u32
TXT=$S/text/man_heldout.tokens.u32
OUT=${1:-/tmp/spqr-acceptance}
mkdir -p "$OUT"
B=./build/tools/spqr
row() { # name, file, seconds
  local ppl bits
  ppl=$($B eval "$2" --text "$TXT" --seqlen 512 --max-windows 200 --json | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["perplexity"])')
  if [ -f "$2" ]; then bits=$($B inspect "$2" --json | python3 -c 'import json,sys; d=json.load(sys.stdin)["bits_per_parameter"]; print("%.3f | %.3f" % (d["quantized"], d["overall"]))'); else bits="16 | 16"; fi
  echo "| $1 | $ppl | $bits | $3 |" | tee -a "$OUT/table.md"
}
echo "| configuration | perplexity | bits/param (quantized linears) | bits/param (whole file) | compress time (s) |" > "$OUT/table.md"
echo "|---|---|---|---|---|" >> "$OUT/table.md"
row "original (fp16)" "$M" "-"
run() { # name, args...
  local name=$1; shift
  local f=$OUT/$(echo "$name" | tr ' =/' '___').spqr
  local t0=$(date +%s.%N)
  $B compress "$M" --calib "$CAL" --seqlen 512 -o "$f" -q "$@" > "$OUT/$(basename "$f").log" 2>&1
  local t1=$(date +%s.%N)
  row "$name" "$f" "$(python3 -c "print('%.1f' % ($t1 - $t0))")"
}
run "rtn w4 b16" --mode rtn --wbits 4 --groupsize 16
run "rtn w3 b16" --mode rtn --wbits 3 --groupsize 16
run "gptq w4 b128" --mode gptq --wbits 4 --groupsize 128
run "gptq w3 b16" --mode gptq --wbits 3 --groupsize 16
run "spqr w3 b16 s3 tau0.2 act_order percdamp1" --mode spqr --wbits 3 --groupsize 16 --qq-groupsize 16 --stat-bits 3 --outlier-threshold 0.2 --perm act_order --percdamp 1.0
# spqr at the 4-bit baselines' budgets: below gptq w4 b128's bits, and below rtn w4 b16's
run "spqr w4 b128 s3 tau0.5" --mode spqr --wbits 4 --groupsize 128 --qq-groupsize 16 --stat-bits 3 --outlier-threshold 0.5
run "spqr w4 b16 s3 tau0.2" --mode spqr --wbits 4 --groupsize 16 --qq-groupsize 16 --stat-bits 3 --outlier-threshold 0.2
cat "$OUT/table.md"
