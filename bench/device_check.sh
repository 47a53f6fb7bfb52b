#!/usr/bin/env bash
# Accelerator check (issue 13), within 8 minutes on one H200:
#   1. plsearch profile-npu --device cuda --device-profile h200 --quick  (CUDA timer, engine)
#   2. bench/latency_accuracy.py on cuda: the predictor's error on whole models it never saw
#   3. a 2-trial search on CUDA in bfloat16 (KD, eval, verification of the front)
#
#   WHEELS=/path/to/wheels bash bench/device_check.sh [OUT_DIR]
#
# Run from the repository root. The machine needs torch (CUDA build) and transformers;
# what else is missing is installed from $WHEELS (pip --no-index): pandas, pyyaml, rich (CLI),
# optuna (the search), lm-eval (scoring; it pulls scikit-learn, datasets, evaluate, ...),
# plotly (the report). The latency parts themselves need only torch, transformers, numpy,
# pandas and pyyaml (no scikit-learn). Every step's log and JSON lands in OUT_DIR; a step
# that fails is reported and the next one still runs. Exit status: the number of failed steps.
set -uo pipefail

OUT=${1:-/tmp/plsearch-device-check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)
FAILED=0
stamp() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$OUT/steps.log"; }
step() {  # step NAME TIMEOUT_S CMD...: run with a time limit, log to OUT/NAME.log
    local name=$1 limit=$2; shift 2
    stamp "start $name: $*"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    if [ $rc -ne 0 ]; then FAILED=$((FAILED + 1)); stamp "FAILED $name (exit $rc)"; else stamp "done $name"; fi
}

# 0. packages: install only what is missing, from the wheels the operator brings.
missing=()
for module in pandas yaml rich optuna plotly lm_eval; do
    "$PY" -c "import $module" 2>/dev/null || missing+=("$module")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ -z "${WHEELS:-}" ]; then
        echo "missing Python modules: ${missing[*]}; set WHEELS=<folder of wheels> (see the header)"
        exit 2
    fi
    stamp "installing from $WHEELS: ${missing[*]}"
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" \
        "pandas==3.1.1" "pyyaml==6.0.4" "rich==15.0.0" "optuna==5.0.0" "plotly==7.1.0" "lm-eval==0.4.13" \
        "scipy==1.17.1" 2>&1 | tail -n 5
fi
"$PY" - <<'EOF' 2>&1 | tee "$OUT/env.log"
import os, torch, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers",
      transformers.__version__)
print("device", torch.cuda.get_device_name(0), "load average", os.getloadavg())
EOF

TABLE="$OUT/h200-quick.csv"
rm -f "$TABLE" "$OUT/h200-quick.predictor.json"

# 1. the quick grid on the GPU through the CUDA timer and the hf-generate engine (~2 min)
step profile 200 "$PY" -m plsearch profile-npu --device cuda --device-profile h200 --quick \
    --out "$TABLE"
step fit 60 "$PY" -m plsearch latency fit --db "$TABLE" --device-profile h200

# 2. whole models of 12 unprofiled archs through generate() vs the predictor (~2 min)
step accuracy 200 "$PY" bench/latency_accuracy.py --device-profile h200 --table "$TABLE" \
    --absorbed 2 --rounds 2 --repeats 1 --json "$OUT/accuracy.json"

# 3. two trials on CUDA in bfloat16: prune, KD, lm-eval, verify the front (~2-3 min)
step search 240 "$PY" -m plsearch search --device-profile h200 --latency-db "$TABLE" \
    --budget 1.1x --trials 2 --sampler random --seed 0 --out "$OUT/search" \
    --study device-check
"$PY" - "$OUT/search" <<'EOF' 2>&1 | tee -a "$OUT/search.log"
import json, sys
from pathlib import Path
run = Path(sys.argv[1]) / "run.json"
if run.exists():
    data = json.loads(run.read_text())
    for key in ("latency", "budget", "parent_tokens_per_s", "fastest_arch", "versions"):
        if key in data:
            print(key, json.dumps(data[key], default=str)[:2500])
trials = Path(sys.argv[1]) / "trials.csv"
if trials.exists():
    print(trials.read_text()[:3000])
EOF

stamp "all steps done; $FAILED failed; logs in $OUT"
exit "$FAILED"
