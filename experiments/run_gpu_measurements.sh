#!/usr/bin/env bash
# One GPU sitting of issue #15's measurements (seed noise, isoFLOP ladders, LR sweep) and, when asked, the
# trainer's compile-across-shapes and run-family parity benchmarks; everything it writes goes to $OUT.
#   OUT=/some/dir SITTING_S=420 EXPERIMENTS=seed_noise,isoflop bash experiments/run_gpu_measurements.sh
#   OUT=... SITTING_S=0 EXTRA="compile:200 parity:240" bash experiments/run_gpu_measurements.sh
# Rows recorded earlier (experiments/results/$ROWS, default gpu_runs.jsonl) are copied to $OUT/$ROWS first, so the
# sitting trains only the runs still missing and $OUT/$ROWS comes back complete. Grid and trainer
# settings are the variables below (the sittings behind each result: experiments/README.md).
# LOG names the sitting's log ($OUT/$LOG.log, default sitting), so that one call can hold several sittings.
# torch.compile's caches are kept under /tmp/compile-cache and, if small, returned as $OUT/compile_cache.tgz;
# a later sitting on a fresh machine unpacks a carried .device/compile_cache.tgz.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-measurements}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=/tmp/compile-cache/inductor TRITON_CACHE_DIR=/tmp/compile-cache/triton
[ -f .device/compile_cache.tgz ] && [ ! -d /tmp/compile-cache ] && tar -xzf .device/compile_cache.tgz -C /tmp
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys,torch,triton;print(sys.version.split()[0],torch.__version__,triton.__version__)"
  echo "commit ${SKILLSCALE_COMMIT:-?}"; date -u +%FT%TZ; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
SITTING_S=${SITTING_S:-420}
if [ "$SITTING_S" -gt 0 ]; then
  ROWS=${ROWS:-gpu_runs.jsonl}  # the row file under experiments/results this sitting continues
  [ -f "experiments/results/$ROWS" ] && cp "experiments/results/$ROWS" "$OUT/$ROWS"
  timeout $((SITTING_S + 60)) python3 experiments/gpu_sitting.py --rows "$OUT/$ROWS" \
    --deadline-s "$SITTING_S" --experiments "${EXPERIMENTS:-seed_noise,isoflop,lr_sweep}" --order "${ORDER:-shape}" \
    --ladder-budgets "${BUDGETS:-6.25e13,2.5e14,1e15}" --ladder-sizes "${SIZES:-4.22e5,1e6,2.37e6,5.62e6,1.33e7}" \
    --ladder-points "${LADDER_POINTS:-}" \
    --seed-points "${SEED_POINTS:-4.22e5@6.25e13,1e6@2.5e14,2.37e6@1e15}" --seeds "${SEEDS:-0,1,2}" \
    --lr-points "${LR_POINTS:-4.22e5@6.25e13,5.62e6@2.5e14}" --multipliers "${MULTIPLIERS:-0.25,0.5,1,2,4}" \
    --mix "${MIX:-knowledge=0.5,code=0.4,general=0.1}" --seq-len "${SEQ_LEN:-256}" ${SITTING_FLAGS:-} \
    2>&1 | tee "$OUT/${LOG:-sitting}.log"
fi
# EXTRA: space-separated NAME:SECONDS of the trainer's own benchmarks (their flags in EXTRA_FLAGS_<NAME>)
for item in ${EXTRA:-}; do
  name=${item%%:*}; limit=${item##*:}
  case "$name" in
    compile) script=benchmarks/bench_compile_shapes.py; flags=${EXTRA_FLAGS_compile:-} ;;
    parity) script=benchmarks/family_parity.py; flags=${EXTRA_FLAGS_parity:-} ;;
    *) echo "unknown EXTRA item $item"; continue ;;
  esac
  # shellcheck disable=SC2086  # flags are word-split on purpose
  timeout "$limit" python3 "$script" $flags 2>&1 | tee "$OUT/$name.log"
done
du -sh /tmp/compile-cache 2>/dev/null
tar -czf /tmp/compile_cache.tgz -C /tmp compile-cache 2>/dev/null \
  && [ "$(stat -c %s /tmp/compile_cache.tgz)" -lt 15000000 ] && cp /tmp/compile_cache.tgz "$OUT/"
ls -la "$OUT"
