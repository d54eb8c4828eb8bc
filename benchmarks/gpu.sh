#!/usr/bin/env bash
# The GPU checks of issue 19, in one go, on a machine with CUDA (about 25 minutes on one GPU):
#
#   benchmarks/gpu.sh                  # writes gpu-results/ beside the repository's root
#   OUT=/tmp/r BUDGET=120 benchmarks/gpu.sh
#
# 1. make bench on CUDA: the automatic plan (nanoGPT's Shakespeare transformer, bf16, fused
#    AdamW), with and without --compile: the best loss in BUDGET seconds, and the time to reach
#    1.47 nats/char (nanoGPT's result, at about 70 s of its 152 s recipe on an H100), read from
#    the run's metrics.jsonl (evaluated every 250 steps).
# 2. The plain LSTM baseline on the same split and budget.
# 3. DDP over every GPU present (torchrun), when there are several.
# 4. Generation tokens per second from the trained transformer: 1 sample and 32 at once.
# Each result is one JSON line in $OUT/results.jsonl; logs beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
BUDGET=${BUDGET:-300}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
make install >/dev/null
PY=.venv/bin/python
export AUTHORGEN_HOME="$OUT/home"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1 || true
$PY -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count())" \
    >>"$OUT/gpu.txt"
cat "$OUT/gpu.txt"

to_target() {  # seconds until the validation loss first reached 1.47, from metrics.jsonl
    $PY - "$1" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl")]
hit = next((r for r in rows if r["val_loss"] <= 1.47), None)
print(json.dumps({"best": min(r["val_loss"] for r in rows),
                  "seconds_to_1.47": hit["elapsed_s"] if hit else None}))
PY
}

for compile in "" "--compile"; do
    name="plan${compile:+-compiled}"
    $PY benchmarks/shakespeare_char.py --device "$DEVICE" --time "${BUDGET}s" --eval-every 250 \
        $compile --out "$OUT/$name" 2>"$OUT/$name.log" | tee -a "$OUT/results.jsonl"
    echo "{\"run\": \"$name\", \"target\": $(to_target "$OUT/$name")}" | tee -a "$OUT/results.jsonl"
done
$PY benchmarks/shakespeare_char.py --device "$DEVICE" --time "${BUDGET}s" --baseline \
    2>"$OUT/baseline.log" | tee -a "$OUT/results.jsonl"

gpus=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -gt 1 ]; then
    .venv/bin/authorgen fetch ../shared/corpora/tinyshakespeare.txt --name shakespeare -q
    .venv/bin/torchrun --standalone --nproc_per_node="$gpus" -m authorgen train shakespeare \
        --device cuda --time "${BUDGET}s" --name ddp --force 2>"$OUT/ddp.log"
    tail -1 "$OUT/ddp.log"
fi

for n in 1 32; do
    start=$(date +%s.%N)
    .venv/bin/authorgen generate "$OUT/plan" --device "$DEVICE" --length 2000 -n "$n" --seed 1 \
        --json >"$OUT/generate-$n.jsonl" 2>/dev/null
    end=$(date +%s.%N)
    $PY - "$OUT/generate-$n.jsonl" "$start" "$end" "$n" <<'PY' | tee -a "$OUT/results.jsonl"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
tokens = sum(r["tokens"] for r in rows)
wall = float(sys.argv[3]) - float(sys.argv[2])
print(json.dumps({"generate_samples": int(sys.argv[4]), "tokens": tokens,
                  "tokens_per_s_end_to_end": round(tokens / wall, 1)}))
PY
done
