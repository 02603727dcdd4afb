#!/usr/bin/env bash
# End-to-end check that snakemake-executor-plugin-slurm submits jobs through a REAL
# (single-node, fake-GPU) SLURM set up by ci/slurm/up.sh, using profiles/slurm.
#
#   sudo ci/slurm/smoke.sh        # exit 0 = all assertions passed; daemons stopped at the end
#
# Phases (wall time of each is printed):
#   1. up.sh                     -- install/configure/start slurm (idempotent)
#   2. toy workflow, 3 rules     -- gpu_job (resources: gpu=1), cpu_job, aggregate; asserts every
#                                   output records a SLURM_JOB_ID, the GPU job saw
#                                   CUDA_VISIBLE_DEVICES=0 and was submitted with --gpus=1
#   3. failing rule (exit 3)     -- asserts snakemake exits non-zero before the timeout and
#                                   prints the job's SLURM log path, which holds the error
#   4. down.sh                   -- always (trap EXIT)
# Env: SNAKEMAKE (default <repo>/.venv/bin/snakemake), SMOKE_TIMEOUT (default 300 s per run),
#      KEEP_TMP=1 keeps the temporary work dir.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SNAKEMAKE="${SNAKEMAKE:-$REPO/.venv/bin/snakemake}"
PROFILE="$REPO/profiles/slurm"
TOY="$HERE/toy/Snakefile"
TMO="${SMOKE_TIMEOUT:-300}"
WORK="$(mktemp -d /tmp/neurobias-slurm-smoke.XXXXXX)"

T_START=$(date +%s.%N)
PHASES=()
phase_t0=0
begin() { phase_name=$1; phase_t0=$(date +%s.%N); echo; echo "=== [smoke] $1"; }
end() {
    local dt; dt=$(awk -v a="$phase_t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    PHASES+=("$phase_name: ${dt}s"); echo "=== [smoke] $phase_name took ${dt}s"
}
FAILED=0
fail() { echo "FAIL: $*" >&2; FAILED=1; }

cleanup() {
    local rc=$?
    begin "down.sh"; "$HERE/down.sh"; end
    local tot; tot=$(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    echo; echo "=== [smoke] phase times:"; printf '    %s\n' "${PHASES[@]}"; echo "    total: ${tot}s"
    if [ "${KEEP_TMP:-0}" = 1 ] || [ "$rc" != 0 ]; then echo "=== [smoke] work dir kept: $WORK"
    else rm -rf "$WORK"; fi
    [ "$rc" = 0 ] && echo "=== [smoke] PASSED" || echo "=== [smoke] FAILED (rc=$rc)"
    exit "$rc"
}
trap cleanup EXIT

[ -x "$SNAKEMAKE" ] || { echo "snakemake not found at $SNAKEMAKE" >&2; exit 2; }
cd "$REPO"

# ------------------------------------------------------------------ 1. up
begin "up.sh"
"$HERE/up.sh" || { echo "up.sh failed" >&2; exit 1; }
end

# `--workflow-profile none`: keep a profiles/default/ of the real workflow out of this toy run
# (snakemake would otherwise auto-apply ./profiles/default on top of --profile).
SMK=(timeout -k 10 "$TMO" "$SNAKEMAKE" --profile "$PROFILE" --workflow-profile none -s "$TOY")

# ------------------------------------------------------------------ 2. toy workflow
begin "toy workflow (3 SLURM jobs)"
D="$WORK/ok"; mkdir -p "$D"
echo "+ ${SMK[*]} --directory $D"
"${SMK[@]}" --directory "$D" > "$WORK/ok.log" 2>&1
rc=$?
end
if [ $rc -ne 0 ]; then
    cat "$WORK/ok.log"; fail "toy workflow exited $rc (124/137 = timeout)"
else
    tail -n 5 "$WORK/ok.log"
    for f in gpu cpu summary; do
        [ -s "$D/toy/$f.txt" ] || fail "missing output toy/$f.txt"
    done
    echo "--- toy/summary.txt:"; cat "$D/toy/summary.txt" 2>/dev/null
    gpu_id=$(sed -n 's/^SLURM_JOB_ID=//p' "$D/toy/gpu.txt" 2>/dev/null)
    cpu_id=$(sed -n 's/^SLURM_JOB_ID=//p' "$D/toy/cpu.txt" 2>/dev/null)
    agg_id=$(sed -n 's/^AGG_SLURM_JOB_ID=//p' "$D/toy/summary.txt" 2>/dev/null)
    for v in gpu_id cpu_id agg_id; do
        [[ "${!v}" =~ ^[0-9]+$ ]] || fail "$v: no SLURM_JOB_ID recorded ('${!v}')"
    done
    [ "$gpu_id" != "$cpu_id" ] && [ "$agg_id" != "$gpu_id" ] && [ "$agg_id" != "$cpu_id" ] \
        || fail "job ids not distinct: $gpu_id $cpu_id $agg_id"
    grep -qx 'CUDA_VISIBLE_DEVICES=0' "$D/toy/gpu.txt" || fail "GPU job did not see CUDA_VISIBLE_DEVICES=0"
    # the plugin must have turned `resources: gpu=1` into `sbatch --gpus=1`
    # (MinJobAge=600 keeps the finished job in slurmctld's memory)
    if [ -n "$gpu_id" ]; then
        scontrol show job "$gpu_id" | grep -q 'TresPerJob=gres:gpu:1' \
            || fail "SLURM job $gpu_id was not submitted with --gpus=1: $(scontrol show job "$gpu_id" | grep -i tres)"
    fi
    grep -q 'has been submitted with SLURM jobid' "$WORK/ok.log" || fail "no 'submitted with SLURM jobid' in output"
fi

# ------------------------------------------------------------------ 3. failing rule
begin "failing rule (exit 3)"
D="$WORK/fail"; mkdir -p "$D"
# --retries 0: the profile's `retries: 1` would resubmit the job (+~30 s)
echo "+ ${SMK[*]} --directory $D --config fail=1 --retries 0"
"${SMK[@]}" --directory "$D" --config fail=1 --retries 0 > "$WORK/fail.log" 2>&1
rc=$?
end
if [ $rc -eq 0 ]; then
    cat "$WORK/fail.log"; fail "failing workflow exited 0"
elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    cat "$WORK/fail.log"; fail "failing workflow hit the ${TMO}s timeout (rc=$rc)"
else
    echo "snakemake exited $rc as expected"
    logpath=$(grep -o '[^ ]*/\.snakemake/slurm_logs/rule_failing_job/[0-9]*\.log' "$WORK/fail.log" | tail -n 1)
    if [ -z "$logpath" ]; then
        cat "$WORK/fail.log"; fail "no SLURM log path printed for the failed job"
    else
        echo "SLURM log printed: $logpath"
        grep -q "exit status 3" "$logpath" 2>/dev/null \
            || fail "SLURM log $logpath missing or lacks 'exit status 3'"
    fi
    grep -q "SLURM status is: 'FAILED'" "$WORK/fail.log" || fail "no \"SLURM status is: 'FAILED'\" in output"
fi

exit $FAILED
