#!/usr/bin/env bash
# Opcode histogram of one kernel's SASS (device machine; needs cuobjdump): the main-loop
# instruction mix quoted in bench/NOTES.md. Usage: bench/gpu/sass_mix.sh OBJECT KERNEL-REGEX [OUTFILE]
set -euo pipefail
obj=$1 re=$2 out=${3:-/dev/null}
name=$(cuobjdump -symbols "$obj" 2>/dev/null | grep -oE "_Z[A-Za-z0-9_]*" | grep -E "$re" | head -1)
cuobjdump -sass -fun "$name" "$obj" > "$out.full" 2>&1 || cuobjdump -sass "$obj" | awk -v n="$name" '$0 ~ "Function : "n {p=1} p && /Function : / && $0 !~ n {p=0} p' > "$out.full"
echo "== $name: $(grep -cE '^ +/\*[0-9a-f]{4}\*/' "$out.full") instructions"
grep -oE '^ +/\*[0-9a-f]{4}\*/ +(@!?U?P[0-9T] +)?[A-Z0-9_.]+' "$out.full" | awk '{print $NF}' | sed 's/\..*//' | sort | uniq -c | sort -rn | head -40
cp "$out.full" "$out" 2>/dev/null || true
