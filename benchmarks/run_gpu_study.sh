#!/usr/bin/env bash
# One sitting of a GPU study on one machine, end to end, resuming what is there:
#   1. the study directory: STUDY_DIR if it exists (the same machine, still warm), else a copy of SEED_FROM (the
#      committed study of the last sitting, e.g. examples/skills-h200), else a new study;
#   2. env.txt (GPU, driver, versions, commit, date) and gpu_util.csv (nvidia-smi every 2 s) for this sitting;
#   3. with MPS=1 (the default) the CUDA MPS control daemon, so that the study's actors run their kernels side by
#      side on the GPU instead of in time slices (BENCHMARKS.md, "GPU study throughput");
#   4. the data caches, built once before the workers start (not by every worker at once);
#   5. `skillscale run CONFIG --time-limit TIME_LIMIT_S`, then `skillscale status` and `skillscale report`;
#   6. $OUT/study.tgz: the study directory without checkpoints, this sitting's log, env and GPU samples appended
#      to its study.log, env.txt and gpu_util.csv. Checkpoints stay behind: a run paused in flight resumes from its
#      checkpoint on the same machine and starts again on another.
#
# Usage: OUT=/dir [CONFIG=configs/skills-h200.yaml] [STUDY_DIR=/tmp/<name>] [SEED_FROM=examples/<name>]
#        [MPS=1] [LAYOUT=AxG] bash benchmarks/run_gpu_study.sh [TIME_LIMIT_S]        (TIME_LIMIT_S default 480)
# LAYOUT (e.g. 6x0.16, 1x1) sets max_concurrent x resources.num_gpus for this sitting; both may change on resume.
set -uo pipefail
die() { echo "error: $*" >&2; exit 2; }
T=${1:-480}
CONFIG=${CONFIG:-configs/skills-h200.yaml}
MPS=${MPS:-1}
LAYOUT=${LAYOUT:-}
[[ "$T" =~ ^[1-9][0-9]*$ ]] || die "TIME_LIMIT_S: expected a positive whole number of seconds, got '$T'"
[ -f "$CONFIG" ] || die "CONFIG: $CONFIG: no such file"
[[ "$MPS" =~ ^[01]$ ]] || die "MPS: expected 0 or 1, got '$MPS'"
[ -z "$LAYOUT" ] || [[ "$LAYOUT" =~ ^[1-9][0-9]*x(0?\.[0-9]+|1|1\.0)$ ]] \
  || die "LAYOUT: expected AxG (actors x GPUs each, e.g. 6x0.16 or 1x1), got '$LAYOUT'"
name=$(python3 -c "import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))['name'])" "$CONFIG" 2>/dev/null) \
  || die "CONFIG: $CONFIG: not a study YAML with a name"
OUT=${OUT:-/tmp/gpu-study}; mkdir -p "$OUT" || die "OUT: cannot create $OUT"
STUDY_DIR=${STUDY_DIR:-/tmp/$name}; SEED_FROM=${SEED_FROM:-examples/$name}
command -v nvidia-smi >/dev/null || die "no GPU here (nvidia-smi not found): run this on the GPU machine"
export PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled  # a single-machine run; the dashboard is not started
# one inductor cache for every actor (Ray's workers inherit it): a shape compiled by one is a cache hit for the
# others, and for the next sitting on the same machine
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/skillscale-inductor} TORCHINDUCTOR_FX_GRAPH_CACHE=1

if [ ! -d "$STUDY_DIR" ] && [ -f "$SEED_FROM/study.yaml" ]; then
  mkdir -p "$(dirname "$STUDY_DIR")" && cp -r "$SEED_FROM" "$STUDY_DIR" && echo "resuming from $SEED_FROM"
fi
config=$CONFIG
if [ -n "$LAYOUT" ]; then  # this sitting's packing, in a copy of the config
  config=$OUT/config-$name.yaml
  python3 - "$CONFIG" "$LAYOUT" "$config" <<'EOF' || die "LAYOUT: could not apply $LAYOUT to $CONFIG"
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1])); actors, gpus = sys.argv[2].split("x")
cfg["max_concurrent"] = int(actors); cfg.setdefault("resources", {})["num_gpus"] = float(gpus)
yaml.safe_dump(cfg, open(sys.argv[3], "w"), sort_keys=False)
EOF
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys,torch,triton,ray,optuna;print(sys.version.split()[0],torch.__version__,triton.__version__,ray.__version__,optuna.__version__)"
  echo "commit ${SKILLSCALE_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)} layout ${LAYOUT:-config} mps $MPS"
  date -u +%FT%TZ; } > "$OUT/env.txt" 2>&1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 > "$OUT/gpu_util.csv" &
smi=$!
if [ "$MPS" = 1 ]; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/skillscale-mps/pipe CUDA_MPS_LOG_DIRECTORY=/tmp/skillscale-mps/log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d; then echo "MPS daemon started" | tee -a "$OUT/study.log"
  else echo "MPS daemon did not start: the actors time-slice" | tee -a "$OUT/study.log"; fi
fi
stop_mps() { [ "$MPS" = 1 ] && echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; kill "$smi" 2>/dev/null; }
trap stop_mps EXIT

python3 benchmarks/bench_packing.py "$CONFIG" --warm-data-only 2>&1 | tee -a "$OUT/study.log"
start=$(date +%s)
python3 -m scheduler.cli run "$config" --study-dir "$STUDY_DIR" --time-limit "$T" 2>&1 | tee -a "$OUT/study.log"
echo "sitting wall_s $(( $(date +%s) - start ))" | tee -a "$OUT/study.log"
python3 -m scheduler.cli status "$STUDY_DIR" 2>&1 | tee -a "$OUT/study.log"
python3 -m scheduler.cli report "$STUDY_DIR" 2>&1 | tail -3 | tee -a "$OUT/study.log"
stop_mps; trap - EXIT
for f in study.log env.txt gpu_util.csv; do  # this sitting's, after the earlier sittings' (if any)
  cat "$STUDY_DIR/$f" "$OUT/$f" 2>/dev/null > "$STUDY_DIR/$f.new"; mv "$STUDY_DIR/$f.new" "$STUDY_DIR/$f"
done
tar --exclude=checkpoints --exclude='*.lock' -czf "$OUT/study.tgz" -C "$(dirname "$STUDY_DIR")" "$(basename "$STUDY_DIR")"
du -h "$OUT/study.tgz"
