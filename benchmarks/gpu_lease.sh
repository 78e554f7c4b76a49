#!/usr/bin/env bash
# One call for a lent GPU (under 10 minutes: give the call timeout_s 595): benchmarks/gpu.py (every family eager,
# then compiled ones while its budget lasts), then benchmarks/gpu_probe.py. Results go to $OUT (the device tool's folder) or to
# benchmarks/results/gpu_lease. From the repository root:  bash benchmarks/gpu_lease.sh
set -u
out=${OUT:-benchmarks/results/gpu_lease}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu,memory.used --format=csv \
    > "$out/smi.txt" 2>&1
python3 -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__,
 'torchvision', torchvision.__version__)" >> "$out/smi.txt" 2>&1
cat "$out/smi.txt"
timeout "${GPU_BENCH_S:-350}" python3 benchmarks/gpu.py --out "$out/gpu.json" --overwrite \
    --budget-s "${GPU_BUDGET_S:-250}" > "$out/gpu_log.txt" 2>&1
echo "gpu.py exit $?"
timeout "${GPU_PROBE_S:-230}" python3 benchmarks/gpu_probe.py --out "$out" > "$out/probe_log.txt" 2>&1
echo "gpu_probe.py exit $?"
tail -n 40 "$out/gpu_log.txt"
grep -A 12 "^## layout A/B\|^## host (\|^## breaks" "$out/probe.txt"
