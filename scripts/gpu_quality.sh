#!/usr/bin/env bash
# Learning curves on one GPU: every quality arm in its own process, all at once, each checkpoint
# decoded and scored as soon as it is saved (python -m scripts.bench_quality --score-during-training).
#
#   scripts/gpu_quality.sh OUT_DIR [DEADLINE_SECONDS] [JOBS_FILE]
#
# JOBS_FILE has one job a line, "name | bench_quality.py options"; without it the jobs below run.
# Before the jobs: wheels in .whl/ (if any) are installed to /tmp/site, and .gpu/work.tgz (if any,
# the prepared corpus: data/, seg-*/, bin-*/) is unpacked into the recipe's work directory.
# Every 20 s, and at the end, records and logs are packed into OUT_DIR/records.tgz, so a run cut
# short still returns every point it scored. Jobs still running at the deadline are stopped.
# Words/s in these records are not speed numbers: the jobs share one GPU and the host's cores.
set -u
out=${1:?usage: scripts/gpu_quality.sh OUT_DIR [DEADLINE_SECONDS] [JOBS_FILE]}
deadline=${2:-480}
jobs_file=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$repo/recipes/libreoffice_de_en/work
mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)

# shellcheck source=scripts/gpu_setup.sh
source "$repo/scripts/gpu_setup.sh" || exit 1
python3 -c "import torch, fairseq; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1

# Same schedule for every arm of a comparison. 8,192 tokens a batch: the GPU's cost is per update.
curve="--max-update 2000 --interval 500 --max-tokens 8192 --warmup-updates 500"
# The demo's budget on 2 CPU cores is about 2,100 MHE updates of 4,096 tokens: schedules for it.
demo="--arms mhe --max-update 2500 --interval 500 --max-tokens 4096 --warmup-updates 500"
default_jobs="
16k-softmax       | --vocab-size 16000 $curve --arms softmax
16k-mhe           | --vocab-size 16000 $curve --arms mhe
16k-mhp           | --vocab-size 16000 $curve --arms mhp
16k-adaptive      | --vocab-size 16000 $curve --arms adaptive
16k-mhe-perlevel  | --vocab-size 16000 $curve --arms mhe/per-level
16k-mhe-tied      | --vocab-size 16000 $curve --arms mhe/tied
16k-mhe-shortlist | --vocab-size 16000 $curve --arms mhe/shortlist
16k-mhp-shortlist | --vocab-size 16000 $curve --arms mhp/shortlist
32k-softmax       | --vocab-size 32000 $curve --arms softmax
32k-mhe           | --vocab-size 32000 $curve --arms mhe
32k-mhp           | --vocab-size 32000 $curve --arms mhp
demo-lr1e-3       | --vocab-size 16000 $demo
demo-lr2e-3       | --vocab-size 16000 $demo --lr 2e-3
demo-lr2e-3-d0.1  | --vocab-size 16000 $demo --lr 2e-3 --dropout 0.1
demo-lr3e-3-d0.1  | --vocab-size 16000 $demo --lr 3e-3 --dropout 0.1
"
if [ -n "$jobs_file" ]; then jobs=$(cat "$jobs_file"); else jobs=$default_jobs; fi
cd "$repo" || exit 1  # the benchmark runs as python3 -m scripts.bench_quality, from the repository root

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1  # TF32 matmuls: fp32 storage, the GPU's fast path
mkdir -p "$out/jobs" "$out/logs"
# the corpus of each vocabulary once, before the jobs (they would all prepare it at once)
for vocab in $(grep -o -- '--vocab-size [0-9]*' <<<"$jobs" | sort -u | cut -d' ' -f2); do
    python3 -m scripts.bench_quality --vocab-size "$vocab" --prepare-only >"$out/logs/prepare-$vocab.log" 2>&1 \
        || { echo "preparing the $vocab corpus failed:"; tail -5 "$out/logs/prepare-$vocab.log"; exit 1; }
done
pids=()
while IFS='|' read -r name options; do
    name=$(echo "$name" | xargs)
    [ -z "$name" ] && continue
    # own process group (setsid), so the deadline stops this job's fairseq processes and no others
    # shellcheck disable=SC2086  # options are words
    setsid python3 -m scripts.bench_quality $options --batch-size 128 --score-during-training \
        --out "$out/jobs/$name" >"$out/logs/$name.log" 2>&1 &
    pids+=($!)
    echo "started $name: $options"
done <<<"$jobs"

pack() {  # records, job logs and fairseq's train/generate logs -> OUT_DIR/records.tgz
    (cd "$work" && find . -path './quality-*' \( -name train.log -o -name generate.log \) 2>/dev/null) \
        >"$out/.loglist"
    tar czf "$out/records.tgz.tmp" -C "$out" jobs logs -C "$work" -T "$out/.loglist" 2>/dev/null
    mv "$out/records.tgz.tmp" "$out/records.tgz"
}

while :; do
    running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
    elapsed=$(($(date +%s) - start))
    points=$(cat "$out"/jobs/*/*.json 2>/dev/null | grep -c '"updates"')
    echo "[$elapsed s] running $running of ${#pids[@]}, points scored $points"
    pack
    [ "$running" -eq 0 ] && break
    if [ "$elapsed" -ge "$deadline" ]; then
        echo "deadline of $deadline s reached: stopping $running jobs"
        for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null; done
        sleep 3
        break
    fi
    sleep 20
done
pack
for f in "$out"/logs/*.log; do grep -q Traceback "$f" && { echo "== $f"; tail -5 "$f"; }; done
echo "done in $(($(date +%s) - start)) s"
