#!/usr/bin/env bash
# Everything issue 16 measures on one GPU, in one run, with its output kept:
#   1. the CUDA tests (tests/test_cuda.py: every SVI method, checkpoints and last-layer Laplace on
#      the GPU; fit and predict through a one-GPU Fabric in 32-true and bf16-mixed precision);
#   2. the speed benchmark on the GPU (benchmarks/bnn_speed.py --device cuda: ratios to plain
#      PyTorch doing the same work in the same run, as on the CPU);
#   3. `bdl run` of every course study at full size with --device cuda, each timed, in the course's
#      order, sharing one network cache (goal: the whole suite in under 5 minutes on one H100).
#
# Prepare once where there is network and data:  benchmarks/gpu_stage.sh $BAYESDL_DATA  (-> .gpu/)
# Then on the GPU machine (the device tool), carrying .gpu:
#   bash benchmarks/gpu_check.sh            # BUDGET=480 seconds for all three parts by default
# The studies stop at the budget; their network cache lives in runs/ (kept while the machine is
# warm), so a second call resumes where the first stopped. Results: $OUT (default runs/gpu-check)
# holds summary.txt, the logs, and results.tar.gz (every study's metrics.json and report.md).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
BUDGET=${BUDGET:-480}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
start=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - start) )); }
say() { echo "$*" | tee -a "$OUT/summary.txt"; }

# --- environment: the image's python3 with torch and lightning; Pyro, ArviZ and bayesdl added
if [ -d .gpu/whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .gpu/whl/*.whl || exit 1
fi
# setup.cfg maps the top-level folders to bayesdl.*: a real (non-editable) install, built offline.
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site  # and python3 -P below: the source tree's bayesdl/ must not shadow it
if [ -f .gpu/data.tar.gz ]; then
    mkdir -p /tmp/data && tar -xzf .gpu/data.tar.gz -C /tmp/data
    export BAYESDL_DATA=/tmp/data
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, pyro, lightning; print('torch', torch.__version__, 'pyro', pyro.__version__,
'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
say "setup done after $(( $(date +%s) - start )) s"

# --- 1. the CUDA tests (from the source tree, against the installed package)
t0=$(date +%s)
timeout 120 python3 -P -m pytest tests/test_cuda.py -q -p no:cacheprovider > "$OUT/tests.txt" 2>&1
say "cuda tests: rc=$? $(tail -1 "$OUT/tests.txt") ($(( $(date +%s) - t0 )) s)"

# --- 2. the speed benchmark on the GPU: full training set, 3 interleaved rounds
t0=$(date +%s)
timeout 150 python3 benchmarks/bnn_speed.py --device cuda --train 60000 --predict 10000 --rounds 3 \
    --predict-rounds 2 --json "$OUT/bnn_speed.json" > "$OUT/bnn_speed.txt" 2>&1
say "speed benchmark: rc=$? ($(( $(date +%s) - t0 )) s)"
grep -E '^\| |x  \(target' "$OUT/bnn_speed.txt" >> "$OUT/summary.txt"

# --- 3. every course study at full size on the GPU, in the course's order, until the budget
#        (calibration includes its conformal section: THR/APS/RAPS sets of every method, 100 splits)
total=0
for study in regression logistic-2d two-moons mnist-guides mnist-dropout calibration failure ood; do
    budget=$(left)
    if [ "$budget" -le 10 ]; then say "$study: not run (budget spent)"; continue; fi
    t0=$(date +%s)
    timeout "$budget" python3 -P -m bayesdl.experiments run "$study" --device cuda --no-progress \
        --out "runs/gpu/$study" --cache-dir runs/gpu/.cache > "$OUT/study-$study.log" 2>&1
    rc=$?
    seconds=$(( $(date +%s) - t0 ))
    total=$(( total + seconds ))
    say "$study: rc=$rc ${seconds} s$([ $rc -eq 124 ] && echo ' (stopped at the budget; rerun to resume)')"
done
say "studies: ${total} s in all (cached networks count 0 when resumed)"

# --- 4. UCI regression on yacht and energy with its conformal intervals (absolute, normalised, CQR)
for dataset in yacht energy; do
    budget=$(left)
    if [ "$budget" -le 10 ]; then say "uci $dataset: not run (budget spent)"; continue; fi
    t0=$(date +%s)
    timeout "$budget" python3 -P -m bayesdl.experiments run uci --set "dataset=$dataset" --device cuda \
        --no-progress --out "runs/gpu/uci-$dataset" --cache-dir runs/gpu/.cache > "$OUT/study-uci-$dataset.log" 2>&1
    say "uci $dataset: rc=$? $(( $(date +%s) - t0 )) s"
done
# --- 5. adversarial examples (issue 31) at full size: the recipes' 50 epochs, 100 samples, the whole test set, 3 seeds
b=$(left); if [ "$b" -gt 10 ]; then t0=$(date +%s); timeout "$b" python3 -P -m bayesdl.experiments run adversarial --device cuda --no-progress --set epochs=50 --set samples=100 --set images=none --out runs/gpu/adversarial --cache-dir runs/gpu/.cache > "$OUT/study-adversarial.log" 2>&1; say "adversarial: rc=$? $(( $(date +%s) - t0 )) s"; else say "adversarial: not run (budget spent)"; fi
# --- sentiment (issue 30): the paper's network (embedding 128, LSTM 128), 3 seeds, the default epochs; resumable from runs/gpu/.cache
b=$(left); if [ "$b" -gt 10 ]; then t0=$(date +%s); timeout "$b" python3 -P -m bayesdl.experiments run sentiment --device cuda --no-progress --set embedding=128 --set hidden=128 --out runs/gpu/sentiment --cache-dir runs/gpu/.cache > "$OUT/study-sentiment.log" 2>&1; say "sentiment: rc=$? $(( $(date +%s) - t0 )) s"; else say "sentiment: not run (budget spent)"; fi
# --- SG-MCMC (issue 34): the modes study at full size, and an SGHMC epoch against plain SGD on the GPU
b=$(left); if [ "$b" -gt 10 ]; then t0=$(date +%s); timeout "$b" bash -c 'python3 -P -m bayesdl.experiments run sgmcmc-modes --device cuda --no-progress --out runs/gpu/sgmcmc-modes --cache-dir runs/gpu/.cache && python3 -P benchmarks/sgmcmc_speed.py --device cuda --train 20000 --json "'"$OUT"'/sgmcmc_speed.json"' > "$OUT/study-sgmcmc.log" 2>&1; say "sgmcmc-modes + sgmcmc_speed: rc=$? $(( $(date +%s) - t0 )) s"; else say "sgmcmc-modes: not run (budget spent)"; fi
# --- influence (issue 32): Koh & Liang's schedule -- all 60,000 training images, the top 500 removals; then random labels on 3 seeds
b=$(left); if [ "$b" -gt 10 ]; then t0=$(date +%s); timeout "$b" python3 -P -m bayesdl.experiments run influence --device cuda --no-progress --set train=none --set top=500 --out runs/gpu/influence --cache-dir runs/gpu/.cache > "$OUT/study-influence.log" 2>&1; say "influence: rc=$? $(( $(date +%s) - t0 )) s"; else say "influence: not run (budget spent)"; fi
b=$(left); if [ "$b" -gt 10 ]; then t0=$(date +%s); timeout "$b" python3 -P -m bayesdl.experiments run random-labels --device cuda --no-progress --set seeds=3 --set train=5000 --set epochs=100 --out runs/gpu/random-labels --cache-dir runs/gpu/.cache > "$OUT/study-random-labels.log" 2>&1; say "random-labels: rc=$? $(( $(date +%s) - t0 )) s"; else say "random-labels: not run (budget spent)"; fi
# --- bandits (issue 37): full size -- mushroom 5 seeds x 2,000 contexts, wheel 5 deltas x 2 seeds; resumable from runs/gpu/.cache
b=$(left); if [ "$b" -gt 10 ]; then t0=$(date +%s); timeout "$b" python3 -P -m bayesdl.experiments run bandits --device cuda --no-progress --out runs/gpu/bandits --cache-dir runs/gpu/.cache > "$OUT/study-bandits.log" 2>&1; say "bandits: rc=$? $(( $(date +%s) - t0 )) s"; else say "bandits: not run (budget spent)"; fi
tar -czf "$OUT/results.tar.gz" runs/gpu/*/metrics.json runs/gpu/*/report.md 2>/dev/null
say "all parts: $(( $(date +%s) - start )) s"
