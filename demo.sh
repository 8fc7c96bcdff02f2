#!/usr/bin/env bash
# Set up and run the main job: install, then extract -> fit -> predict on a real image set.
# Usage: ./demo.sh [DATA_SET_FOLDER] [RUN_FOLDER]
set -euo pipefail
cd "$(dirname "$0")"
DATA="${1:-${DEEPFAKE_DATA:-../shared/data}/images/stylegan140k_small}"
RUN="${2:-reports/demo}"

python -m pip install --quiet --disable-pip-version-check -e .
python -m pipelines.extract --config configs/train_image.yaml --data-root "$DATA" \
    --out "$RUN/features.parquet"
python -m pipelines.fit --config configs/train_image.yaml --features "$RUN/features.parquet" \
    --out "$RUN/run"
python -m pipelines.predict --model "$RUN/run" --data-root "$DATA" --out "$RUN/submission.csv"
echo "report: $RUN/run/report.html   submission: $RUN/submission.csv"
