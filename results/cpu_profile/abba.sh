#!/bin/bash
# CPU runtime tuning off (A) and on (B), interleaved A B B A, 300 updates each on an idle machine:
# results/cpu_profile/abba.sh DATA_BIN OUT_DIR   (from the repository root; needs /usr/bin/time)
DATA=$1; OUT=$2
for run in A1:off B1:on B2:on A2:off; do
  name=${run%%:*}; flag=""; [ "${run##*:}" = off ] && flag="--no-cpu-runtime-tuning"
  mkdir -p "$OUT"; /usr/bin/time -v results/cpu_profile/probe.sh "$DATA" "$OUT" "$name" 300 $flag 2> "$OUT/$name.time"
  echo "$name done $(date)"
done
