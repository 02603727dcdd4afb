#!/usr/bin/env bash
# Stop the CI SLURM started by ci/slurm/up.sh: slurmd + slurmctld, then munged.
# Never fails if they are already gone.  --keep-munge leaves munged running.
# Kills only the daemons' own pids: from their pid files, plus `pgrep -x <exact daemon name>`
# (also catches daemons started by hand without pid file). Leftover slurmstepd are killed too.
set -u
keep_munge=0; [ "${1:-}" = "--keep-munge" ] && keep_munge=1

pids_of() {  # pids_of NAME PIDFILE -> unique pids of that daemon
    { [ -f "$2" ] && cat "$2" 2>/dev/null; pgrep -x "$1" 2>/dev/null; } | grep -E '^[0-9]+$' | sort -u
}

live() {  # live PID: exists and is not a zombie (PID 1 here may not reap daemonized parents)
    local st; st="$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null)"
    [ -n "$st" ] && [ "$st" != Z ]
}

stop() {  # stop "NAME PIDFILE" ... : TERM all, wait up to 10 s, then KILL the rest
    local spec name pidfile p alive
    local -a all=()
    for spec in "$@"; do
        read -r name pidfile <<<"$spec"
        for p in $(pids_of "$name" "$pidfile"); do
            # only signal it if it really is that daemon (a stale pid file may point elsewhere)
            [ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$name" ] && live "$p" || continue
            kill -TERM "$p" 2>/dev/null && { echo "[slurm-down] TERM $name ($p)"; all+=("$p"); }
        done
    done
    for _ in $(seq 1 40); do
        alive=0
        for p in "${all[@]}"; do live "$p" && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.25
    done
    for p in "${all[@]}"; do live "$p" && kill -KILL "$p" 2>/dev/null && echo "[slurm-down] KILL $p"; done
    for spec in "$@"; do read -r name pidfile <<<"$spec"; rm -f "$pidfile"; done
}

stop "slurmd /run/slurm/slurmd.pid" "slurmctld /run/slurm/slurmctld.pid"
# job steps left behind by slurmd would keep the fake GPU busy next time
for p in $(pgrep -x slurmstepd 2>/dev/null); do live "$p" && kill -KILL "$p" 2>/dev/null && echo "[slurm-down] KILL slurmstepd ($p)"; done
[ "$keep_munge" = 1 ] || stop "munged /run/munge/munged.pid"
exit 0
