#!/usr/bin/env bash
# The GPU evidence for issues 4 and 8, in one go on a single-GPU machine:
#   1. an isoFLOP ladder through the real trainer (per-skill U-shapes at one budget),
#   2. the configs/skills-h100.yaml study through Ray (4 actors x 0.25 GPU), time-limited, then its report.
# Usage: OUT=/some/dir [CONFIG=configs/skills-h100.yaml] [STUDY_DIR=studies/NAME] \
#          bash benchmarks/run_gpu_study.sh [LADDER_TIMEOUT_S] [STUDY_TIME_LIMIT_S]
# (LADDER_TIMEOUT_S=0 skips the ladder.) An existing STUDY_DIR is resumed: a study longer than one sitting
# runs as several time-limited calls, each continuing the last.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-study}; mkdir -p "$OUT"
LADDER_T=${1:-170}; STUDY_T=${2:-300}; CONFIG=${CONFIG:-configs/skills-h100.yaml}
export PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled  # a single-machine run; the dashboard is not started
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import sys,torch,triton,ray,optuna;print(sys.version.split()[0],torch.__version__,triton.__version__,ray.__version__,optuna.__version__)"
  date -u +%FT%TZ; } > "$OUT/env.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 > "$OUT/gpu_util.csv" &
smi=$!
[ "$LADDER_T" -gt 0 ] && timeout "$LADDER_T" python benchmarks/isoflop_ladder.py --budget 1e14 --sizes 2.5e5,5e5,1e6,2e6,4e6,8e6,1.6e7 \
  --no-compile --seq-len 256 --eval-samples 256 --knowledge-entities 5000 --domain-tokens 8e6 \
  --out "$OUT/ladder.json" --append "" 2>&1 | tee "$OUT/ladder.log"
study=${STUDY_DIR:-/tmp/$(python -c "import yaml,sys;print(yaml.safe_load(open(sys.argv[1]))['name'])" "$CONFIG")}
start=$(date +%s)
python -m scheduler.cli run "$CONFIG" --study-dir "$study" --time-limit "$STUDY_T" 2>&1 | tee -a "$OUT/study.log"
echo "study wall_s $(( $(date +%s) - start ))" >> "$OUT/study.log"
python -m scheduler.cli report "$study" 2>&1 | tee -a "$OUT/study.log"
kill $smi
tar --exclude=checkpoints -czf "$OUT/study.tgz" -C "$(dirname "$study")" "$(basename "$study")"
