#!/usr/bin/env bash
# Issue 14's GPU measurement in one run of under 10 minutes on one GPU (H200 or similar):
#
#   scripts/gpu_check.sh OUT_DIR
#
# 1. python -m scripts.check_device_path: MHE/MHP training steps on the device never sync
#    (torch.cuda.set_sync_debug_mode("error")) and match the CPU planner, fp32 and bf16;
# 2. python -m scripts.bench_output_layer at V = 32k and 131k, 8,192 tokens, d = 512, with label
#    smoothing, bf16 and fp32: eager softmax, torch.compile'd softmax, torch's fused
#    linear_cross_entropy, Liger and Cut Cross-Entropy (where their wheels are in .whl/), MHP
#    and MHE; speed and peak memory side by side, the decoding step of each;
# 3. python -m scripts.bench_translation --model base --bf16 at 32k: training words/s of the eager
#    and the Liger (else torch) fused softmax against MHE, same updates, then decoding.
# Wheels in .whl/ (fairseq and its pins for the GPU machine's Python, liger-kernel,
# cut-cross-entropy) are installed to /tmp/site first; .gpu/work.tgz (the prepared corpus)
# (with bench_translation's own bench-test500 corpus at 32k) is unpacked into the recipe's work
# directory. Everything lands in OUT_DIR, and
# OUT_DIR/gpu_check.tgz is repacked after each step.
#
# Preparing them here (the GPU machine reaches no network; both folders are git-ignored, so pass
# them to the device tool's carry):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl fairseq-fixed==0.12.3.1 \
#       hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3 bitarray liger-kernel cut-cross-entropy
#   python -m scripts.bench_quality --prepare-only --vocab-size 16000   # and 32000
#   python -m scripts.bench_translation --vocab-size 32000 --test-lines 500 --prepare-only
#   tar czf .gpu/work.tgz -C recipes/libreoffice_de_en/work data seg-spm16000 bin-spm16000 \
#       seg-spm32000 bin-spm32000 bench-test500
set -u
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$repo/recipes/libreoffice_de_en/work
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo" || exit 1  # the scripts run as python3 -m scripts.NAME, from the repository root
start=$(date +%s)
say() { echo "[$(($(date +%s) - start)) s] $*"; }
pack() { tar czf "$out/gpu_check.tgz" -C "$out" --exclude gpu_check.tgz . 2>/dev/null; }

# shellcheck source=scripts/gpu_setup.sh
source "$repo/scripts/gpu_setup.sh" || exit 1
export PYTHONUNBUFFERED=1
python3 - <<'EOF' | tee "$out/environment.txt"
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
for name in ("triton", "liger_kernel", "cut_cross_entropy", "fairseq"):
    print(name, "yes" if importlib.util.find_spec(name) else "no")
EOF
fused="softmax-compile softmax-torch"
python3 -c "import liger_kernel" 2>/dev/null && fused="$fused softmax-liger" && best=softmax-liger
python3 -c "import cut_cross_entropy" 2>/dev/null && fused="$fused softmax-cce"

say "1. device path: no sync, same values as the CPU planner"
python3 -m scripts.check_device_path --vocab 32768 --json "$out/device_path.json" 2>&1 | tee "$out/device_path.log"
pack

for dtype in bf16 fp32; do
    say "2. output layer, $dtype"
    timeout 120 python3 -m scripts.bench_output_layer --device cuda --dtype "$dtype" \
        --vocab-sizes 32768 131072 --tokens 8192 --dim 512 --methods softmax $fused mhp mhe \
        --repeats 5 --warmup 2 --json "$out/output_layer_$dtype.json" 2>&1 | tee "$out/output_layer_$dtype.log"
    pack
done

say "3. translation, transformer base width, bf16 autocast, 32k"
timeout 240 python3 -m scripts.bench_translation --model base --bf16 --vocab-size 32000 \
    --methods softmax "${best:-softmax-torch}" mhe --max-update 200 --warmup-updates 100 --max-tokens 8192 \
    --test-lines 500 --batch-size 128 --no-exhaustive --out "$out/translation" 2>&1 | tail -30 | tee "$out/translation.log"
pack
say "done"
