#!/usr/bin/env bash
# The GPU check in one script (issue 11): on a machine with a CUDA GPU, in under 8 minutes and
# installing nothing new, it runs
#   1. the GPU-marked tests                  (pytest -m gpu)
#   2. the training-step benchmark           (benchmarks/bench_train_step.py --device cuda:
#                                             resnet50 256x128, AMP, beside the bare torchvision
#                                             classifier step with AMP, in the same run)
#   3. a synthetic dataset at full size      (occsim synth 1,000 ids + occsim generate 128x64)
#   4. a 2-epoch `reid train`                (resnet50, 256x128, P=16 K=4 --train-on both, AMP)
#   5. `reid eval` on the GPU                (clean and occluded queries, global+local distance)
#   6. a single-GPU DDP run                  (torchrun --nproc_per_node=1, NCCL, 1 short epoch)
# and prints one summary table (also written to RESULTS/summary.md, with one log per step).
# Targets on an H200/H100: >= 3,000 training images/s and >= 0.8x the bare classifier's rate.
#
# The real figures need a CUDA GPU: without one the script stops at once (exit 2) and says so.
# GPU_CHECK_DRY_RUN=1 (or --cpu-smoke) runs every step tiny on the CPU instead (resnet18 at
# 64x32, a few steps, gloo instead of NCCL): it checks the plumbing, its figures mean nothing.
#
# Environment: reuses $VENV (default .venv) when it imports torch and this package. Otherwise it
# runs scripts/setup.sh, which creates the venv and pip-installs torch, torchvision and the test
# extras: several minutes and ~3 GB of downloads (a network is needed), on top of the 8. When the
# system Python already has a CUDA torch, the venv is made with --system-site-packages so that
# setup.sh finds and keeps it (then only the small packages are installed).
#
# Usage:  bash scripts/gpu_check.sh [--cpu-smoke]
#   RESULTS=dir (default $OUT/gpu_check when $OUT is set, else runs/gpu_check)
#   GPU_CHECK_WORK=dir for the synthetic data and runs (default: a temporary folder, removed)
set -uo pipefail
cd "$(dirname "$0")/.."

DRY="${GPU_CHECK_DRY_RUN:-0}"
for arg in "$@"; do
    case "$arg" in
        --cpu-smoke) DRY=1 ;;
        -h|--help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: gpu_check: unknown argument '$arg'; see 'bash scripts/gpu_check.sh --help'" >&2; exit 2 ;;
    esac
done
VENV="${VENV:-.venv}"
if [ -n "${OUT:-}" ]; then RESULTS="${RESULTS:-$OUT/gpu_check}"; else RESULTS="${RESULTS:-runs/gpu_check}"; fi
mkdir -p "$RESULTS" || { echo "error: gpu_check: cannot create $RESULTS; set RESULTS=dir" >&2; exit 2; }
RESULTS="$(cd "$RESULTS" && pwd)"
CHECK_START=$(date +%s)

# ---------------------------------------------------------------------------------- environment
if ! "$VENV/bin/python" -c "import torch, torchvision, occsim, reid, cv2, h5py" >/dev/null 2>&1; then
    echo "gpu_check: no usable $VENV; making it with scripts/setup.sh (downloads torch: minutes)" >&2
    if [ ! -x "$VENV/bin/python" ] && python3 -c "import torch" >/dev/null 2>&1; then
        python3 -m venv --system-site-packages "$VENV"
    fi
    VENV="$VENV" bash scripts/setup.sh || {
        echo "error: gpu_check: scripts/setup.sh could not make $VENV (offline?); create it, or set VENV=path" >&2
        exit 2
    }
fi
PY="$VENV/bin/python"
if [ "$DRY" != 1 ]; then
    if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
        build=$("$PY" -c "import torch; print(torch.__version__, 'CUDA build', torch.version.cuda)" 2>/dev/null)
        echo "error: gpu_check: torch.cuda.is_available() is False here (torch $build); the figures need a CUDA" \
             "GPU: run it on one, or GPU_CHECK_DRY_RUN=1 bash scripts/gpu_check.sh for the CPU plumbing check" >&2
        exit 2
    fi
fi

if [ -n "${GPU_CHECK_WORK:-}" ]; then
    WORK="$GPU_CHECK_WORK"; mkdir -p "$WORK"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
fi
: > "$RESULTS/steps.tsv"

# ---------------------------------------------------------------------------------- the steps
# The trainings exercise the paper's recipe (pairs + OBC), the heavier path, not reid train's default.
PAPER_RECIPE=(--train-on both --alpha 0.8 --no-random-erasing)
if [ "$DRY" = 1 ]; then
    DEVICE=cpu; CORES=2
    BENCH=(--quick --device cpu --steps 1 --warmup 0 --batch-p 2 --batch-k 2)
    SYNTH=(--ids 12 --images-per-id 4 --workers 1)
    GENERATE=(--size 64x32 --patch 16 --workers 2)
    TRAIN=("${PAPER_RECIPE[@]}" --arch resnet18 --size 64x32 --batch-p 2 --batch-k 2 --max-steps-per-epoch 2 --workers 0)
    DDP_STEPS=2
else
    DEVICE=cuda
    CORES=$("$PY" -c "import os; print(len(os.sched_getaffinity(0)))")
    BENCH=(--device cuda --steps 10 --warmup 3)
    SYNTH=(--ids 1000 --images-per-id 12 --workers "$CORES")
    GENERATE=(--workers "$CORES")
    TRAIN=("${PAPER_RECIPE[@]}" --arch resnet50 --size 256x128 --batch-p 16 --batch-k 4 --workers $((CORES > 12 ? 12 : CORES)))
    DDP_STEPS=20
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

run_step() {  # run_step NAME LIMIT_S command...: log to RESULTS/NAME.log, record status and seconds
    local name="$1" limit="$2"; shift 2
    local start end rc
    echo "gpu_check: $name ..." >&2
    start=$(date +%s%N)
    timeout --kill-after=10 "$limit" "$@" > "$RESULTS/$name.log" 2>&1
    rc=$?
    end=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%s\t%s\t%d.%03d\n' "$name" "$rc" $((end / 1000)) $((end % 1000)) >> "$RESULTS/steps.tsv"
    [ "$rc" = 0 ] || echo "gpu_check: $name failed (exit $rc; 124 = over its ${limit} s); see $RESULTS/$name.log" >&2
    return "$rc"
}

run_step tests 60 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests
run_step bench 120 "$PY" benchmarks/bench_train_step.py "${BENCH[@]}" --json-out "$RESULTS/bench.json"
run_step data 60 bash -c "'$VENV/bin/occsim' synth --out '$WORK/synth' --force ${SYNTH[*]} && \
    '$VENV/bin/occsim' generate --src '$WORK/synth' --out '$WORK/occluded.h5' --force ${GENERATE[*]} && \
    '$VENV/bin/occsim' info '$WORK/occluded.h5'"
if [ -f "$WORK/occluded.h5" ]; then
    run_step train 120 "$VENV/bin/reid" train --data "$WORK/occluded.h5" --out "$WORK/run" --force --pretrained none \
        --epochs 2 --eval-every 0 --device "$DEVICE" "${TRAIN[@]}" && cp "$WORK/run/metrics.jsonl" "$RESULTS/"
    run_step eval 45 "$VENV/bin/reid" eval --data "$WORK/occluded.h5" --checkpoint "$WORK/run/last.pt" \
        --device "$DEVICE" --distance global+local --workers "$((CORES > 8 ? 8 : CORES))" --out "$RESULTS/eval.json"
    run_step torchrun 75 "$VENV/bin/torchrun" --standalone --nproc_per_node=1 -m cli.reid_train \
        --data "$WORK/occluded.h5" --out "$WORK/ddp" --force --pretrained none --epochs 1 --eval-every 0 \
        --max-steps-per-epoch "$DDP_STEPS" --device "$DEVICE" "${TRAIN[@]}" \
        && cp "$WORK/ddp/metrics.jsonl" "$RESULTS/ddp_metrics.jsonl"
else
    for name in train eval torchrun; do printf '%s\t%s\t%s\n' "$name" skipped 0 >> "$RESULTS/steps.tsv"; done
fi

# ---------------------------------------------------------------------------------- the table
"$PY" - "$RESULTS" "$DRY" "$(( $(date +%s) - CHECK_START ))" <<'EOF'
import json, sys
from pathlib import Path

results, dry, total = Path(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3])
steps = {name: (rc, float(sec)) for name, rc, sec in (l.split("\t") for l in (results / "steps.tsv").read_text().splitlines())}

def load(name):
    try:
        return json.loads((results / name).read_text())
    except (OSError, ValueError):
        return None

def last_record(name):
    try:
        lines = (results / name).read_text().splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None

def tail(name, pattern):
    try:
        return next((l.strip() for l in reversed((results / f"{name}.log").read_text().splitlines()) if pattern in l), "")
    except OSError:
        return ""

figures, targets = {}, {}
figures["tests"] = tail("tests", " in ") or "no summary line"
targets["tests"] = "all pass"
bench = load("bench.json")
if bench:
    ours, base = bench["ours"]["images_per_s"], bench["baseline"]["images_per_s"]
    figures["bench"] = (f"{bench['arch']} {bench['size'][0]}x{bench['size'][1]} amp {bench['amp']}: ours {ours:,.0f} img/s, "
                        f"torchvision classifier {base:,.0f} img/s = {bench['throughput_ratio']:.2f}x; "
                        f"memory {bench['memory_ratio']:.2f}x")
    met = ours >= 3000 and bench["throughput_ratio"] >= 0.8
    targets["bench"] = f">= 3,000 img/s, >= 0.8x: {'met' if met else 'NOT met'}"
figures["data"] = tail("data", "source images in")
targets["data"] = ""
train = last_record("metrics.jsonl")
if train:
    rate = train.get("images_per_s", 0.0)
    figures["train"] = f"epoch {train['epoch']}: {rate:,.0f} img/s, loss {train.get('total', float('nan')):.3f}"
    targets["train"] = f">= 3,000 img/s: {'met' if rate >= 3000 else 'NOT met'}"
report = load("eval.json")
if report:
    figures["eval"] = "; ".join(f"{r['name']} R1 {100 * r['r1']:.1f} mAP {100 * r['mAP']:.1f} ({r['num_queries']} q)"
                                for r in report["rows"])
ddp = last_record("ddp_metrics.jsonl")
joined = tail("torchrun", "joined the")  # "INFO reid.engine.distributed: rank 0/1 joined the nccl process group"
if ddp:
    figures["torchrun"] = f"{joined.split(': ', 1)[-1] if joined else 'NO process group'}; {ddp.get('images_per_s', 0):,.0f} img/s"
targets["torchrun"] = "nccl" if not dry else "gloo (CPU)"
titles = {"tests": "GPU tests (-m gpu)", "bench": "train-step benchmark", "data": "synthetic data (synth + generate)",
          "train": "reid train, 2 epochs", "eval": "reid eval on the device", "torchrun": "torchrun --nproc_per_node=1"}
lines = [f"gpu_check{' (DRY RUN on the CPU: plumbing only, the figures mean nothing)' if dry else ''}", "",
         "| step | status | s | figure | target |", "|---|---|---|---|---|"]
ok = True
for key, title in titles.items():
    rc, sec = steps.get(key, ("missing", 0.0))
    status = "ok" if rc == "0" else ("timed out" if rc == "124" else f"FAILED ({rc})" if rc != "skipped" else "skipped")
    ok = ok and status == "ok"
    lines.append(f"| {title} | {status} | {sec:.0f} | {figures.get(key, '')} | {targets.get(key, '')} |")
lines.append(f"| total | {'ok' if ok else 'FAILED'} | {total} | | < 480 s: {'met' if total < 480 else 'NOT met'} |")
text = "\n".join(lines)
print(text)
(results / "summary.md").write_text(text + "\n")
sys.exit(0 if ok else 1)
EOF
