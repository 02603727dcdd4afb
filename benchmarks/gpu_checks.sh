#!/usr/bin/env bash
# The GPU checks this repository could not run (no GPU was available to its sessions so far), as
# one prepared script for a machine that has one: the GPU tests (the stacked engine's memory plan
# measured by CUDA's allocator, a stack trained on the GPU, each run's random numbers drawn from its
# own CUDA random state; the caller's CUDA random state kept by seeded code; manipulations on the
# GPU as on the CPU), then the benchmarks that report GPU numbers: models/hour of the two pack
# engines with GPU utilisation, and against one job per model (the sequential side plus a measured
# job start-up per model: issue 18's >= 10x target for the small nets; also Safarani's MTL arm on
# VGG-11), the training fast path, and the full TIN-TC evaluation. About 10 minutes on an
# H200; each step has its own time limit, so one slow step does not cost the others.
#
#     OUT=/some/dir bash benchmarks/gpu_checks.sh     # results and logs under $OUT
#
# It runs with the machine's own python3 (which must hold torch with CUDA) and the package from
# src/ (PYTHONPATH), so the repository need not be installed. Missing pure-Python dependencies
# stop it at the first step, named; on a machine without network, carry their wheels (for this
# path: jsonschema, jsonschema-specifications, referencing, rpds-py) and install them first.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run one check, its log in $OUT/NAME.log, and say how it ended
    local name=$1 limit=$2
    shift 2
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "$name: exit $? ($(tail -n 1 "$OUT/$name.log"))"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, neurobias.stacked, neurobias.packed; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
step gpu_tests 240 $PY -m pytest -p no:cacheprovider -q tests/test_stacked.py tests/test_seeding.py \
    tests/test_manipulations.py -k "gpu or cuda"
step stacked_training 300 $PY benchmarks/stacked_training.py --device cuda --models 10 --repeats 2 \
    --out "$OUT/stacked_training_gpu.csv"
step stacked_training_mtl 180 $PY benchmarks/stacked_training.py --device cuda --nets vgg11 --arm mtl --models 10 \
    --out "$OUT/stacked_training_mtl_gpu.csv"
step training_throughput 120 $PY benchmarks/training_throughput.py --device cuda --out "$OUT/training_throughput_gpu.csv"
step tin_tc_timing 120 $PY benchmarks/tin_tc_timing.py --device cuda --out "$OUT/tin_tc_timing_gpu.csv"
