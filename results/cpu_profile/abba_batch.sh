#!/bin/bash
# A_TOKENS (A) against B_TOKENS (B) tokens per batch (default 4,096 against 2,048), fp32, interleaved
# A B B A, UPDATES updates each on an idle machine (from the repository root):
#   results/cpu_profile/abba_batch.sh DATA_BIN OUT_DIR UPDATES [A_TOKENS B_TOKENS]
DATA=$1; OUT=$2; UPDATES=${3:-60}; A=${4:-4096}; B=${5:-2048}
for run in A1:$A B1:$B B2:$B A2:$A; do
  name=${run%%:*}
  PRECISION=fp32 results/cpu_profile/probe.sh "$DATA" "$OUT" "$name" "$UPDATES" --max-tokens "${run##*:}"
  echo "$name (${run##*:} tokens) done $(date)"
done
