#!/bin/sh
# test_cli.sh SPQR — the command line refuses malformed option values with exit 2 and an error
# naming the option (never a silent default), and a good run still works end to end.
set -u
SPQR=$1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
expect_refused() { # expect_refused "TEXT THAT MUST APPEAR" ARGS...
    want=$1
    shift
    "$SPQR" "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ $rc -ne 2 ] || ! grep -qF -- "$want" "$T/err"; then
        echo "FAIL: spqr $*: rc $rc, stderr: $(cat "$T/err")"
        fail=1
    fi
}
"$SPQR" make-tiny-model "$T/m" >/dev/null || { echo "FAIL: make-tiny-model"; exit 1; }
C="--calib $T/m/calib.u32 -o $T/out.spqr"
expect_refused "--nsamples 'abc'" compress "$T/m" $C --nsamples abc
expect_refused "--nsamples '0'" compress "$T/m" $C --nsamples 0
expect_refused "--seqlen '-5'" compress "$T/m" $C --seqlen -5
expect_refused "--wbits '3.5'" compress "$T/m" $C --wbits 3.5
expect_refused "--groupsize ''" compress "$T/m" $C --groupsize ""
expect_refused "--outlier-threshold 'x'" compress "$T/m" $C --outlier-threshold x
expect_refused "--percdamp 'nan'" compress "$T/m" $C --percdamp nan
expect_refused "--max-memory '8Q'" compress "$T/m" $C --max-memory 8Q
expect_refused "--mode 'awq'" compress "$T/m" $C --mode awq
expect_refused "--perm 'random'" compress "$T/m" $C --perm random
expect_refused "--calib needs a value" compress "$T/m" --calib
expect_refused "unknown option '--bits'" compress "$T/m" $C --bits 3
expect_refused "--seqlen '1x'" eval "$T/m" --text "$T/m/eval.u32" --seqlen 1x
expect_refused "--max-windows '0'" eval "$T/m" --text "$T/m/eval.u32" --max-windows 0
expect_refused "--batch '17'" bench --gpu --batch 17
expect_refused "--shape '0x5'" bench --gpu --shape 0x5
expect_refused "--config '9'" bench --gpu --config 9
expect_refused "unknown option or missing value '--frob'" bench --gpu --frob
expect_refused "no --shape, --config or --quick" bench --gpu --file "$T/x.spqr" --quick
expect_refused "unknown option '--nonsense'" bench --nonsense
[ -e "$T/out.spqr" ] && { echo "FAIL: a refused run left $T/out.spqr"; fail=1; }
# and the accepted forms still work: sizes with suffixes, inf threshold
"$SPQR" compress "$T/m" $C -q --seqlen 32 --nsamples 4 --max-memory 1M --outlier-threshold inf \
    || { echo "FAIL: valid compress"; fail=1; }
"$SPQR" validate "$T/out.spqr" >/dev/null || { echo "FAIL: validate"; fail=1; }
# the GPU benchmark names a bad file (checked before the GPU, so here too), exit 1
head -c 100 "$T/out.spqr" > "$T/bad.spqr"
"$SPQR" bench --gpu --file "$T/bad.spqr" >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 1 ] || ! grep -qF "$T/bad.spqr" "$T/err"; then
    echo "FAIL: bench --gpu on a truncated file: rc $rc, stderr: $(cat "$T/err")"
    fail=1
fi
# and on a good one: a table and the per-step sum where a GPU is usable, else exit 77 and SKIP
"$SPQR" bench --gpu --file "$T/out.spqr" --batch 1 >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -eq 77 ] && grep -q "^SKIP: " "$T/out"; then
    echo "SKIP (part of test_cli): spqr bench --gpu: $(sed -n 's/^SKIP: //p' "$T/out")"
elif [ $rc -ne 0 ] || ! grep -q "^All [0-9]* SpQR tensors" "$T/out" ||
    ! grep -q "^| 1 | [0-9.]* | [0-9.]* | [0-9.]*x |" "$T/out"; then
    echo "FAIL: bench --gpu --file: rc $rc, stdout: $(cat "$T/out"), stderr: $(cat "$T/err")"
    fail=1
fi
[ $fail -eq 0 ] && echo "test_cli: all refusals and the valid run behaved"
exit $fail
