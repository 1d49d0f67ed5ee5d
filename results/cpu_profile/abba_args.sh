#!/bin/bash
# Two fairseq-argument sets of the demo's fp32 probe, A and B, interleaved A B B A on an idle machine,
# UPDATES updates each, with the demo's batches and schedule (1,024 tokens, lr 1.4e-3, warm-up 2,000):
#   results/cpu_profile/abba_args.sh DATA_BIN OUT_DIR UPDATES "A args" "B args"   (from the repository root)
DATA=$1; OUT=$2; UPDATES=$3; A_ARGS=$4; B_ARGS=$5
for name in A1 B1 B2 A2; do
  args=$A_ARGS; [ "${name:0:1}" = B ] && args=$B_ARGS
  PRECISION=fp32 results/cpu_profile/probe.sh "$DATA" "$OUT" "$name" "$UPDATES" --max-tokens 1024 --lr 0.0014 --warmup-updates 2000 $args
  echo "$name ($args) done $(date)"
done
