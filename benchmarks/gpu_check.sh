#!/usr/bin/env bash
# One prepared GPU check, run from the repository root on a CUDA box (one H100/H200: under 8 minutes):
#   1. the learner MFU benchmark (benchmarks/learner_gpu.py): a 1.5B-shaped Qwen2 built from a config
#      (random weights, no hub download), packed 8k-token trees, FlexAttention with the tree mask, bf16;
#      with the packing figures of that shape (micro-batch fill, naive / packed tokens, est. speed-up);
#   2. a whole BRPO step (benchmarks/gpu_step.py): the same model generating with the transformers engine
#      (shared-prefix summaries; b_max 2,048, S = 4, A = 2, G = 4, 4 problems), every summary graded by the
#      verifier (math-verify in grader processes), one learner update on the packed trees (FlexAttention);
#      the split generate / grade / learn, tokens/s, learner MFU, peak GPU memory;
#   3. the packing ratio (benchmarks/packing.py): packed trees vs naive per-summary re-encoding, measured,
#      on the box's CPU (tiny model, one thread), alongside 1 and 2 (it needs no GPU);
# then one table: metric, value, goal / notes. Each part runs under its own timeout, so the whole check
# ends within setup + 180 + 220 s (packing alongside). Needs torch and transformers preinstalled, plus
# pydantic, pydantic-settings, structlog (which the core's modules import) and math-verify (the verifier's
# grader processes), installed if missing from the wheel folder only, never from a package registry;
# vLLM, Celery, Redis, SQL are not used.
#
#   make gpu-wheels                           # first, where a registry is: fills .whl/; copy it along
#   benchmarks/gpu_check.sh                   # the GPU check
#   benchmarks/gpu_check.sh --cpu-smoke       # the same path, tiny shapes on the CPU (~2 min): plumbing only
#                                             # (or GPU_CHECK_CPU_SMOKE=1)
#   benchmarks/gpu_check.sh --install-only    # only the install into $GPU_CHECK_VENV, then a torch-free probe
#
# Python: $GPU_CHECK_PYTHON if set (used as it is), else the first of .venv/bin/python,
# $GPU_CHECK_VENV/bin/python and python3 that imports the benchmarks' modules (and, for the GPU check,
# sees CUDA); else it uses $GPU_CHECK_VENV (default ~/.cache/anytime/gpu-check-venv; if absent, created
# from a Python >= 3.11 that has torch, with the system's site packages, so the preinstalled CUDA torch is
# reused) and installs what is missing with `pip install --no-index --find-links $GPU_CHECK_WHEELS`
# (default .whl). Logs and JSON figures go to $GPU_CHECK_OUT (default: a new temporary folder).
# Exit status: 0 when every part finished.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
began=$SECONDS

smoke=${GPU_CHECK_CPU_SMOKE:-0}
install_only=0
for arg in "$@"; do
    case $arg in
        --cpu-smoke) smoke=1 ;;
        --install-only) install_only=1 ;;
        -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # the repository's modules, no install needed
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1          # models come from configs: nothing to download
export TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1  # a part killed by its timeout keeps what it printed
out=${GPU_CHECK_OUT:-$(mktemp -d -t gpu-check.XXXXXX)}
mkdir -p "$out"

# What the benchmarks import, checked rather than assumed (vLLM and Celery are never imported).
probe='
import sys
import torch, transformers
import anytime.tinymodel.build, services.learner.learner, tests.fixtures.synthetic
import services.engines.transformers_engine, services.rollout.anytime_rollout, anytime.verification.verifier
import math_verify  # the verifier grader processes import it
if sys.argv[1] == "0":
    assert torch.cuda.is_available(), "torch sees no CUDA device"
    from torch.nn.attention.flex_attention import flex_attention
print(f"torch {torch.__version__}, transformers {transformers.__version__}")
'
versions=
usable() {  # sets $versions when $1 runs the probe
    { [[ -x $1 ]] || command -v "$1" >/dev/null 2>&1; } && versions=$("$1" -c "$probe" "$smoke" 2>/dev/null)
}

venv=${GPU_CHECK_VENV:-$HOME/.cache/anytime/gpu-check-venv}
wheels=${GPU_CHECK_WHEELS:-$REPO/.whl}
# What the core's modules import beyond torch and transformers, and the verifier's grading library
# (pyproject's floors); benchmarks/gpu_wheels.sh pins these and their dependencies.
requirements=("pydantic>=2.7" "pydantic-settings>=2.3" "structlog>=24.1" "math-verify[antlr4_13_2]>=0.7")
# The check's modules that need no torch: what the install alone must make importable.
light_probe='
import sys
from importlib.metadata import version
import anytime.settings, anytime.logging, anytime.brpo.config, anytime.brpo.cuts, anytime.contracts.learn
import anytime.model_facts, anytime.prompting, anytime.summary_format, tests.fixtures.synthetic
import anytime.verification.verifier, math_verify
heavy = sorted({"torch", "transformers", "vllm"} & set(sys.modules))
assert not heavy, f"the torch-free modules imported {heavy}"
names = ("pydantic", "pydantic-settings", "structlog", "math-verify")
print(", ".join(f"{name} {version(name)}" for name in names))
'

make_venv() {  # creates $venv unless it exists, from a Python >= 3.11, preferably one that has torch
    [[ -x $venv/bin/python ]] && return 0
    local base='' candidate
    for candidate in python3.12 python3.11 python3; do
        if ! command -v "$candidate" >/dev/null 2>&1 ||
            ! "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            continue
        fi
        [[ -n $base ]] || base=$candidate
        if "$candidate" -c 'import importlib.util as u, sys
sys.exit(not (u.find_spec("torch") and u.find_spec("transformers")))' 2>/dev/null; then
            base=$candidate
            break
        fi
    done
    [[ -n $base ]] || { echo "need Python >= 3.11 (the repository's floor)" >&2; return 1; }
    echo "== creating $venv from $base (system site packages kept: its torch is reused)"
    "$base" -m venv --system-site-packages "$venv"
}

install_from_wheels() {  # $1: a Python; installs $requirements from $wheels alone, never from a registry
    local log rc=0 missing requirement
    echo "== installing what is missing from $wheels (no package index)"
    if [[ ! -d $wheels ]]; then
        echo "no wheel folder $wheels — run \`make gpu-wheels\` on a machine with a registry and copy" \
            ".whl/ along" >&2
        return 1
    fi
    # The wheel folder is pip's only source: PIP_* variables and pip's config files are set aside.
    log=$(
        while read -r name; do unset "$name"; done < <(compgen -e | grep '^PIP_' || true)
        PIP_CONFIG_FILE=/dev/null "$1" -m pip install --quiet --disable-pip-version-check --no-index \
            --find-links "$wheels" "${requirements[@]}" 2>&1
    ) || rc=$?
    ((rc == 0)) && return 0
    missing=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' <<<"$log")
    if [[ -n $missing ]]; then
        for requirement in $missing; do
            echo "missing wheel: $requirement (for $("$1" -V 2>&1)) in $wheels — run \`make gpu-wheels\`" \
                "on a machine with a registry and copy .whl/ along" >&2
        done
    else
        echo "$log" >&2
    fi
    return 1
}

if [[ $install_only == 1 ]]; then
    make_venv
    install_from_wheels "$venv/bin/python"
    light=$("$venv/bin/python" -c "$light_probe")
    echo "== $venv/bin/python imports the check's torch-free modules ($light)"
    exit 0
fi

python=
if [[ -n ${GPU_CHECK_PYTHON:-} ]]; then
    candidates=("$GPU_CHECK_PYTHON")
else
    candidates=("$REPO/.venv/bin/python" "$venv/bin/python" python3)
fi
for candidate in "${candidates[@]}"; do
    if usable "$candidate"; then python=$candidate; break; fi
done
if [[ -z $python && -z ${GPU_CHECK_PYTHON:-} ]]; then
    make_venv
    install_from_wheels "$venv/bin/python"
    if usable "$venv/bin/python"; then python=$venv/bin/python; fi
    candidates=("$venv/bin/python")  # the one whose probe is shown below
fi
if [[ -z $python ]]; then
    echo "no Python that imports the benchmarks (and sees CUDA, for the GPU check); torch and" \
        "transformers must come preinstalled (only the wheels in $wheels are installed); the probe says:" >&2
    "${candidates[0]}" -c "$probe" "$smoke" >&2 || true
    exit 1
fi
echo "== python: $python ($versions)"
echo "== logs and figures: $out"
setup_s=$((SECONDS - began))

# Each part under its own timeout; a failure is reported in the table, not fatal before it.
learner_rc=0
step_rc=0
if [[ $smoke == 1 ]]; then
    echo "== CPU smoke: tiny shapes, figures mean nothing"
    learner_args=(--cpu-check)
    step_args=(--cpu-smoke)
    packing_args=(--b-max 128 --trees 2)
    learner_limit=120
    step_limit=120
    packing_limit=120  # shares the CPU with the other two here
else
    learner_args=(--steps 3 --baseline-iters 6)
    step_args=()
    packing_args=(--b-max 2048 --trees 3)  # packing.py's defaults: ~60 s on one core
    learner_limit=180
    step_limit=220
    packing_limit=150
fi
echo "== budget: setup ${setup_s} s + learner <= ${learner_limit} s + step <= ${step_limit} s" \
    "(packing alongside, <= ${packing_limit} s) = at most $((setup_s + learner_limit + step_limit + 20)) s"
quiet() { grep --line-buffered -v -e 'Writing model shards' -e 'Loading weights' || true; }  # bars

# The packing ratio needs no GPU: it runs on the CPU alongside the GPU parts, its log shown after them.
(
    t0=$SECONDS rc=0
    timeout --kill-after=10 "$packing_limit" "$python" benchmarks/packing.py "${packing_args[@]}" \
        --json "$out/packing.json" >"$out/packing.raw.log" 2>&1 || rc=$?
    quiet <"$out/packing.raw.log" >"$out/packing.log" && rm -f "$out/packing.raw.log"
    echo "$rc $((SECONDS - t0))" >"$out/packing.status"
) &
packing_pid=$!

t0=$SECONDS
echo "== learner MFU (limit ${learner_limit}s)"
timeout --kill-after=10 "$learner_limit" "$python" benchmarks/learner_gpu.py "${learner_args[@]}" \
    --json "$out/learner.json" 2>&1 | tee "$out/learner.log" || learner_rc=${PIPESTATUS[0]}
learner_s=$((SECONDS - t0))

t0=$SECONDS
echo "== whole BRPO step: generate, grade, learn (limit ${step_limit}s)"
timeout --kill-after=10 "$step_limit" "$python" benchmarks/gpu_step.py ${step_args[@]+"${step_args[@]}"} \
    --json "$out/step.json" 2>&1 | quiet | tee "$out/step.log" || step_rc=${PIPESTATUS[0]}
step_s=$((SECONDS - t0))

wait "$packing_pid" || true
read -r packing_rc packing_s <"$out/packing.status" || { packing_rc=1; packing_s=?; }
echo "== packing ratio (CPU, one thread, alongside the above; limit ${packing_limit}s)"
cat "$out/packing.log"

"$python" - "$out" "$smoke" "$learner_rc" "$step_rc" "$packing_rc" "$setup_s" "$learner_s" "$step_s" \
    "$packing_s" "$((SECONDS - began))" <<'EOF'
import json
import sys
from pathlib import Path

out, smoke, learner_rc, step_rc, packing_rc, setup_s, learner_s, step_s, packing_s, total_s = sys.argv[1:]
smoke = smoke == "1"


def load(name: str) -> dict:
    path = Path(out) / name
    return json.loads(path.read_text()) if path.exists() else {}


def status(rc: str, seconds: str) -> str:
    word = {"0": "ok", "124": "TIMED OUT", "137": "KILLED (timeout)"}.get(rc, f"FAILED (exit {rc})")
    return f"{word}, {seconds} s"


learner, step, packing = load("learner.json"), load("step.json"), load("packing.json")
rows: list[tuple[str, str, str]] = []


def row(metric: str, data: dict, key: str, fmt: str, note: str) -> None:
    rows.append((metric, fmt.format(data[key]) if key in data else "-", note))


mode = "CPU smoke (tiny shapes; figures check plumbing only)" if smoke else "GPU check"
rows.append(("mode", mode, ""))
row("device", learner, "device", "{}", f"torch {learner.get('torch', '?')}")
row("parameters", learner, "params", "{:,}", "expect ~1.78B: R1-Distill-Qwen-1.5B's shape, untied")
row("bf16 matmul rate", learner, "matmul_tflops", "{:.1f} TFLOP/s", "measured 8192³ GEMMs: MFU's peak")
row("reference tokens/s", learner, "reference_tokens_per_s", "{:,.0f}",
    f"HF Qwen2, causal SDPA, {learner.get('sequence_tokens', '?')}-token rows")
row("reference MFU", learner, "reference_mfu", "{:.1%}", "H100 earlier: ~26k tokens/s, 33%")
attention = f"{learner.get('attention', '?')}, {learner.get('precision', '?')}"
row("learner update tokens/s", learner, "learner_update_tokens_per_s", "{:,.0f}", attention)
row("learner update MFU", learner, "learner_update_mfu", "{:.1%}", "goal: >= 45% on the packed trees")
row("learner step tokens/s", learner, "learner_step_tokens_per_s", "{:,.0f}", "with the old-log-prob pass")
row("learner step MFU", learner, "learner_step_mfu", "{:.1%}", "counting 6·P·T")
row("learner step time", learner, "learner_step_s", "{:.2f} s", f"{learner.get('trees_per_step', '?')} trees")
row("learner / reference", learner, "learner_over_reference", "{:.2f}x", "update pass / plain HF reference")
row("peak GPU memory", learner, "peak_memory_gib", "{:.1f} GiB", "")
row("micro-batch fill", learner, "micro_batch_fill", "{:.1%}",
    f"{learner.get('tree_tokens', '?')}-token trees padded to {learner.get('sequence_tokens', '?')}")
row("packing tokens naive/packed", learner, "packing_token_ratio", "{:.2f}x",
    "this tree shape: a sequence per summary vs one tree")
row("packing speed-up (est.)", learner, "packing_speedup_estimate", "{:.2f}x",
    "token ratio x learner/reference rate")
if step.get("budgets"):
    shape = (
        f"{step['problems']} problems x G {step['group_size']}, b_max {step['budgets'][-1]}, "
        f"S {len(step['budgets'])}, A {step['num_summaries']}"
    )
    rows.append(("step shape", shape, f"summaries <= {step['summary_max_tokens']} tokens; random policy"))
if "generate_s" in step:
    parts = ("generate_s", "grade_s", "learn_s")
    split = " / ".join(f"{step[key]:.2f}" if key in step else "-" for key in parts)
    rows.append(("step generate / grade / learn", f"{split} s", "one measured step (budget: step.log)"))
if "verdicts" in step:
    counts = f"{step['trajectories']} / {step['summary_requests']} / {step['summaries']} / {step['verdicts']}"
    statuses = ", ".join(f"{name} {count}" for name, count in sorted(step["statuses"].items()))
    rows.append(("step traj / requests / summ / verdicts", counts, statuses))
row("step generated tokens/s", step, "generated_tokens_per_s", "{:,.0f}", "thinking + summary tokens")
row("step learner update MFU", step, "learner_update_mfu", "{:.1%}",
    f"{step.get('learner_update_tokens_per_s', 0):,.0f} tokens/s; 6·P·T / measured bf16 rate")
row("step learner step MFU", step, "learner_step_mfu", "{:.1%}",
    f"{step.get('learner_step_tokens_per_s', 0):,.0f} tokens/s, with the old-log-prob pass")
memory = step.get("peak_memory_gib")
rows.append(("step peak GPU memory", "-" if memory is None else f"{memory:.1f} GiB",
             "max_memory_allocated over the step" if step.get("cuda") else "not measured on the CPU"))
warm_up = "synthetic trees" + (": FlexAttention compiles here" if step.get("cuda") else "")
row("step learner warm-up", step, "warm_up_s", "{:.1f} s", warm_up)
tiny = f"b_max {packing.get('b_max', '?')}, {packing.get('trees', '?')} trees, tiny model, CPU"
row("packing tokens naive/packed", packing, "token_ratio", "{:.2f}x", tiny)
row("packing speed-up (measured)", packing, "speedup", "{:.2f}x", "fwd+bwd, block-sparse SDPA vs naive")
row("packing max log-prob diff", packing, "max_logprob_diff", "{:.1e}",
    "packed = naive up to float error (fp32)")
rows.append(("learner benchmark", status(learner_rc, learner_s), "benchmarks/learner_gpu.py"))
rows.append(("step benchmark", status(step_rc, step_s), "benchmarks/gpu_step.py"))
rows.append(("packing benchmark", status(packing_rc, packing_s), "benchmarks/packing.py (alongside)"))
rows.append(("setup", f"{setup_s} s", "finding or making the Python"))
rows.append(("elapsed", f"{total_s} s", "goal: < 480 s on one H100/H200" if not smoke else "goal: < 180 s"))

header = ("metric", "value", "goal / notes")
widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
print()
for cells in [header, tuple("-" * width for width in widths), *rows]:
    print("| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |")
EOF

[[ $learner_rc == 0 && $step_rc == 0 && $packing_rc == 0 ]]
