#!/usr/bin/env bash
# Check `gauge serve --engine vllm` with vLLM's own parallelism on a CUDA machine.
#
# Starts the server with tensor parallel size TP (default 2), waits until /health
# says ready, sends one completion and one chat request, checks both answers and
# that vLLM logged the parallel config, then stops the server. Exit 0 = PASS.
#
#   scripts/check_vllm_parallel.sh                         # TP=2 on 2 GPUs of this node
#   TP=4 scripts/check_vllm_parallel.sh Qwen/Qwen2.5-7B-Instruct
#   TP=2 DP=2 scripts/check_vllm_parallel.sh               # 2 replicas x 2 GPUs
#   TP=8 PP=2 BACKEND=ray scripts/check_vllm_parallel.sh org/big-model   # on a Ray head node
#
# Settings (environment): TP, PP, DP (parallel sizes, default 2, 1, 1), BACKEND
# (mp by default; ray across nodes), PORT (8123), MAX_MODEL_LEN (2048), TIMEOUT
# (seconds to wait for the model, 1200), GAUGE (the gauge command), PYTHON, LOG.
# See docs/gpu.md. Not run in gauge's CI: it needs vllm and at least TP x PP x DP GPUs.
set -euo pipefail

MODEL=${1:-${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}}
TP=${TP:-2}
PP=${PP:-1}
DP=${DP:-1}
BACKEND=${BACKEND:-mp}
PORT=${PORT:-8123}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-2048}
TIMEOUT=${TIMEOUT:-1200}
GAUGE=${GAUGE:-gauge}
PYTHON=${PYTHON:-python}
LOG=${LOG:-$(mktemp -t gauge-vllm-parallel.XXXXXX)}
URL="http://127.0.0.1:${PORT}"

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# 1. What the run needs: vllm, the GPUs (on this node unless Ray spreads them).
"$PYTHON" -c "import vllm; print('vllm', vllm.__version__)" || fail "vllm is not importable: pip install vllm"
need=$((TP * PP * DP))
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
echo "GPUs on this node: ${gpus}; needed: TP ${TP} x PP ${PP} x DP ${DP} = ${need} (backend ${BACKEND})"
if [ "$BACKEND" != "ray" ] && [ "$gpus" -lt "$need" ]; then
    fail "this node has ${gpus} GPU(s) but the run needs ${need}; lower TP/PP/DP or use BACKEND=ray on a Ray cluster"
fi
if [ "$BACKEND" = "ray" ]; then
    ray status >/dev/null 2>&1 || fail "BACKEND=ray but no Ray cluster answers 'ray status': start one (docs/gpu.md)"
fi

# 2. Start the server in its own process group, so stopping it stops vLLM's workers too.
echo "starting gauge serve (log: ${LOG})"
setsid "$GAUGE" serve --engine vllm --model "$MODEL" --port "$PORT" \
    --max-model-len "$MAX_MODEL_LEN" \
    --tensor-parallel-size "$TP" --pipeline-parallel-size "$PP" \
    --data-parallel-size "$DP" --distributed-executor-backend "$BACKEND" \
    >"$LOG" 2>&1 &
SERVER=$!

stop() {
    if kill -0 "$SERVER" 2>/dev/null; then
        kill -TERM -- "-$SERVER" 2>/dev/null || true
        for _ in $(seq 30); do
            kill -0 "$SERVER" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-$SERVER" 2>/dev/null || true
    fi
}
trap stop EXIT

# 3. Wait until the model is loaded and warm (/health answers 200).
start=$SECONDS
until curl -sf "${URL}/health" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER" 2>/dev/null; then
        tail -n 40 "$LOG" >&2
        fail "gauge serve exited before it was ready (log above)"
    fi
    if [ $((SECONDS - start)) -gt "$TIMEOUT" ]; then
        tail -n 40 "$LOG" >&2
        fail "not ready after ${TIMEOUT}s"
    fi
    sleep 5
done
echo "ready after $((SECONDS - start))s: $(curl -s "${URL}/health")"

# 4. One completion and one chat request; each must come back with text and usage.
MODEL="$MODEL" URL="$URL" "$PYTHON" - <<'PY'
import json
import os
import sys
import urllib.error
import urllib.request

url, model = os.environ["URL"], os.environ["MODEL"]


def post(route: str, body: dict) -> dict:
    request = urllib.request.Request(
        url + route, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as ex:
        sys.exit(f"FAIL: {route} answered {ex.code}: {ex.read().decode()[:500]}")


completion = post(
    "/v1/completions",
    {"model": model, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
)
text = completion["choices"][0]["text"]
print(f"completion: {text!r} usage={completion['usage']}")
assert text.strip(), "empty completion"
assert completion["usage"]["completion_tokens"] > 0, completion["usage"]

chat = post(
    "/v1/chat/completions",
    {
        "model": model,
        "messages": [{"role": "user", "content": "What is 12+30? Answer with the number."}],
        "max_tokens": 16,
        "temperature": 0,
    },
)
content = chat["choices"][0]["message"]["content"]
print(f"chat: {content!r} usage={chat['usage']}")
assert content.strip(), "empty chat reply"
if "42" not in content:
    print("note: the chat reply does not say 42 (a small model may miss; the route works)")
PY

# 5. vLLM logs its config once: it must show the sizes asked for.
logged=$(grep -o "tensor_parallel_size=[0-9]*" "$LOG" | head -n 1 || true)
if [ "$logged" = "tensor_parallel_size=${TP}" ]; then
    echo "vLLM config: $(grep -o "tensor_parallel_size=[0-9]*, *pipeline_parallel_size=[0-9]*" "$LOG" | head -n 1)"
elif [ -n "$logged" ]; then
    fail "vLLM's log shows ${logged}, not tensor_parallel_size=${TP} (see ${LOG})"
else
    echo "warning: vLLM's log has no tensor_parallel_size line (its format changed?); check ${LOG}"
fi
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader || true
echo "PASS: ${MODEL} served with TP=${TP} PP=${PP} DP=${DP} backend=${BACKEND}"
