#!/bin/bash
# 4,096 (A) against 2,048 (B) tokens per batch, fp32, interleaved A B B A, UPDATES updates each on an
# idle machine: results/cpu_profile/abba_batch.sh DATA_BIN OUT_DIR UPDATES   (from the repository root)
DATA=$1; OUT=$2; UPDATES=${3:-60}
for run in A1:4096 B1:2048 B2:2048 A2:4096; do
  name=${run%%:*}
  PRECISION=fp32 results/cpu_profile/probe.sh "$DATA" "$OUT" "$name" "$UPDATES" --max-tokens "${run##*:}"
  echo "$name (${run##*:} tokens) done $(date)"
done
