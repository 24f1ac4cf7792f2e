#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU box without a package registry, downloaded here, on a
# machine with one, into .whl/ (ignored by git; copy it to the box along with the repository):
#
#   make gpu-wheels                            # or: benchmarks/gpu_wheels.sh [EXTRA_REQUIREMENT...]
#
# The box is assumed to hold Python 3.12 with CUDA torch, transformers and numpy: only what the check's
# own modules import beyond those is fetched (pydantic, pydantic-settings, structlog, and math-verify for
# the verifier's grader processes), with each of their dependencies named and pinned (--no-deps: torch and
# its kin are never downloaded). Wheels only, for CPython 3.12 and for the Python running pip here (so
# tests can install from the folder on this machine), manylinux x86_64. A requirement with no such wheel
# (a source-only package) fails the script, named. The folder is rebuilt from scratch each run (pip's
# resolver refuses two versions of one package) and must stay under 64 MiB.
#
# Variables: GPU_CHECK_WHEELS (the folder, default .whl), GPU_WHEELS_PYTHON (whose pip downloads: default
# .venv/bin/python, else python3), GPU_WHEELS_PYTHON_VERSIONS (default: "3.12 <that Python's X.Y>").
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

for arg in "$@"; do
    case $arg in
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option: $arg (try --help)" >&2; exit 2 ;;
    esac
done

# Pinned to what .venv runs, inside pyproject's floors (pydantic>=2.7, pydantic-settings>=2.3,
# structlog>=24.1, math-verify[antlr4_13_2]>=0.7). Who needs what: anytime.settings imports
# pydantic_settings, anytime.logging structlog, the configs and contracts pydantic; the step benchmark
# (benchmarks/gpu_step.py) grades with anytime.verification, whose grader processes import math_verify.
requirements=(
    pydantic==2.14.4           # annotated-types, pydantic-core (exactly this one), typing-*
    pydantic-core==2.50.5      # compiled: one wheel per Python version
    annotated-types==0.8.0
    typing-extensions==4.16.0  # pydantic needs >= 4.16, likely newer than the box's (torch's)
    typing-inspection==0.4.5
    pydantic-settings==2.16.3  # pydantic, python-dotenv, typing-*
    python-dotenv==1.2.4
    structlog==26.1.0          # no dependencies on Python >= 3.11
    math-verify==0.9.0         # latex2sympy2_extended (exactly this one)
    latex2sympy2_extended==1.11.0  # antlr4-python3-runtime (4.13.2: the antlr4_13_2 extra), sympy
    antlr4-python3-runtime==4.13.2
    sympy==1.14.0              # the box's torch brings its own (kept); here for a venv without torch
    mpmath==1.3.0              # sympy's
    "$@"
)
platforms=(manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)
limit_mib=64

dest=${GPU_CHECK_WHEELS:-.whl}
python=${GPU_WHEELS_PYTHON:-}
if [[ -z $python ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
local_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
read -r -a versions <<<"${GPU_WHEELS_PYTHON_VERSIONS:-3.12 $local_version}"

partial=$dest.partial
rm -rf "$partial"
mkdir -p "$partial"
trap 'rm -rf "$partial"' EXIT
platform_flags=()
for platform in "${platforms[@]}"; do platform_flags+=(--platform "$platform"); done

seen=" "
for version in "${versions[@]}"; do
    [[ $seen == *" $version "* ]] && continue
    seen+="$version "
    echo "== wheels for CPython $version (${platforms[*]})"
    log=$(mktemp)
    if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
        --implementation cp "${platform_flags[@]}" --dest "$partial" "${requirements[@]}" >"$log" 2>&1; then
        missing=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' "$log")
        if [[ -n $missing ]]; then
            for requirement in $missing; do
                echo "no wheel for $requirement (CPython $version, manylinux x86_64): a source-only" \
                    "package cannot be installed on the box; pin a version that has a wheel, or drop it" >&2
            done
        else
            cat "$log" >&2
        fi
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
done

bytes=$(du -sb "$partial" | cut -f1)
mib=$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
if ((bytes >= limit_mib * 1048576)); then
    echo "the wheels come to $mib MiB, over the $limit_mib MiB that travels to the box" >&2
    exit 1
fi
rm -rf "$dest"
mv "$partial" "$dest"
trap - EXIT
ls -1 "$dest"
echo "== $dest: $(find "$dest" -type f -name '*.whl' | wc -l) wheels, $mib MiB (limit $limit_mib MiB)"
