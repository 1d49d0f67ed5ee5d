#!/bin/bash
# fp32 (A) against bf16 autocast (B), interleaved A B B A, UPDATES updates each on an idle machine:
# results/cpu_profile/abba_precision.sh DATA_BIN OUT_DIR UPDATES   (from the repository root)
DATA=$1; OUT=$2; UPDATES=${3:-40}
for run in A1:fp32 B1:bf16 B2:bf16 A2:fp32; do
  name=${run%%:*}
  PRECISION=${run##*:} results/cpu_profile/probe.sh "$DATA" "$OUT" "$name" "$UPDATES"
  echo "$name (${run##*:}) done $(date)"
done
