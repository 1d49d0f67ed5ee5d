#!/bin/bash
# One training probe of the demo's bf16 model and batches: probe.sh DATA_BIN OUT_DIR NAME UPDATES [fairseq args...]
# (DATA_BIN: the recipe's WORK/bin-spm16000; PRECISION=fp32 drops --autocast-bf16). Writes OUT_DIR/NAME.log; run from the repository root.
DATA=$1; OUT=$2; NAME=$3; UPDATES=$4; shift 4
mkdir -p "$OUT"
.venv/bin/fairseq-train "$DATA" --user-dir mhce_nmt --task translation_mhce --arch transformer_mhce \
  --mhce-mode mhe --criterion mhce_cross_entropy --label-smoothing 0.1 --encoder-layers 3 --decoder-layers 3 \
  --encoder-embed-dim 256 --decoder-embed-dim 256 --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 \
  --encoder-attention-heads 4 --decoder-attention-heads 4 --dropout 0.1 --optimizer adam --adam-betas '(0.9,0.98)' \
  --lr 0.002 --lr-scheduler inverse_sqrt --warmup-updates 500 --mhce-shortlist 1024 --max-tokens 4096 --seed 1 \
  --max-update "$UPDATES" --cpu $([ "${PRECISION:-bf16}" = bf16 ] && echo --autocast-bf16) --save-dir "$OUT/ck-$NAME" --no-save --disable-validation \
  --log-format simple --log-interval 10 "$@" > "$OUT/$NAME.log" 2>&1
