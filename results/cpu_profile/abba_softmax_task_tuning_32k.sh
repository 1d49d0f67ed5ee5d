#!/bin/bash
# softmax at 32k (the bench's model and batches), fp32: stock task (A) against the plugin's task, which
# applies its CPU runtime settings (B); ABBA, 40 updates each, no checkpoints
cd /work/main
B=/work/runs/s27/work/bench-test100/bin-spm32000
run() {  # tag task
  out=/work/runs/s27/abba/$1; rm -rf $out; mkdir -p $out
  .venv/bin/fairseq-train $B --user-dir /work/main/mhce_nmt --task $2 --arch transformer --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.1 --share-decoder-input-output-embed --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 \
    --decoder-embed-dim 256 --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 --encoder-attention-heads 4 \
    --decoder-attention-heads 4 --dropout 0.2 --optimizer adam --adam-betas '(0.9,0.98)' --lr 1e-3 --lr-scheduler inverse_sqrt \
    --warmup-updates 30 --max-tokens 4096 --seed 1 --max-update 40 --cpu --save-dir $out --no-save \
    --disable-validation --log-format simple --log-interval 10 > $out/train.log 2>&1
  echo "$1 $2 $(grep -o 'wps=[0-9.]*' $out/train.log | tr '\n' ' ')"
}
run A1 translation; run B1 translation_mhce; run B2 translation_mhce; run A2 translation
