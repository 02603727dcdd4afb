#!/usr/bin/env bash
# Stand up a real single-node SLURM (Debian 12 / Slurm 22.05) on this machine, for CI.
#
#   sudo ci/slurm/up.sh        # idempotent; exits 0 once the node is idle
#   ci/slurm/down.sh           # stops the daemons again
#
# What you get:
#   * one node, named after `hostname -s`, NodeAddr=127.0.0.1, CPUs/sockets/cores from
#     `slurmd -C`, RealMemory = 90% of the machine's memory;
#   * one partition `gpu` (Default=YES): it mirrors the GPU partition users submit to,
#     and is the value of default-resources.slurm_partition in profiles/slurm/config.yaml;
#   * one FAKE GPU: GresTypes=gpu, node Gres=gpu:1, gres.conf `Name=gpu File=<symlink to
#     /dev/null>` (Slurm drops a file-less GPU and refuses a regular file).  `--gpus=1`
#     schedules and the job sees CUDA_VISIBLE_DEVICES=0.  If /dev/nvidia0 exists it is used;
#   * no accounting database (accounting_storage/none): `sacct` does not work, so
#     snakemake must poll with squeue (see the profile), and MinJobAge=600 keeps finished
#     jobs visible to squeue/scontrol for 10 min;
#   * no cgroups/systemd needed: proctrack/linuxproc, task/none; daemons run as root.
#
# Env overrides: SLURM_PARTITION (default gpu), SLURM_UP_TIMEOUT (default 60 s),
#                SLURM_N_GPUS (default 1).
# Must run as root. Logs: /var/log/slurm/{slurmctld,slurmd}.log, /var/log/munge/munged.log.
set -euo pipefail

PARTITION="${SLURM_PARTITION:-gpu}"
TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
NGPUS="${SLURM_N_GPUS:-1}"
ETC=/etc/slurm
RUN=/run/slurm
STATE=/var/lib/slurm
LOGDIR=/var/log/slurm
FAKEGPU_DIR=/run/slurm-fake-gpu

log() { echo "[slurm-up] $*" >&2; }

dump_logs() {
    log "---- daemon logs ----"
    for f in /var/log/munge/munged.log "$LOGDIR/slurmctld.log" "$LOGDIR/slurmd.log"; do
        echo "==== $f (last 60 lines) ====" >&2
        tail -n 60 "$f" >&2 2>/dev/null || echo "(missing)" >&2
    done
    echo "==== sinfo -R ====" >&2; sinfo -R >&2 2>/dev/null || true
    echo "==== scontrol show node ====" >&2; scontrol show node >&2 2>/dev/null || true
}
fail() { log "ERROR: $*"; dump_logs; exit 1; }

[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

# ---------------------------------------------------------------- 1. packages
need=()
for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} ..."
    t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    log "apt install took $((SECONDS - t0)) s"
fi

# ---------------------------------------------------------------- 2. config
HOST="$(hostname -s)"
# e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
HW="$(slurmd -C | head -n 1)"
hwval() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$HW"; }
CPUS=$(hwval CPUs); SOCKETS=$(hwval SocketsPerBoard); CORES=$(hwval CoresPerSocket)
THREADS=$(hwval ThreadsPerCore); MEM=$(hwval RealMemory)
[ -n "$CPUS" ] && [ -n "$MEM" ] || fail "could not parse 'slurmd -C': $HW"
MEM=$(( MEM * 90 / 100 ))    # a bit below the real memory, or slurmd drains the node

mkdir -p "$ETC" "$RUN" "$STATE/slurmctld" "$STATE/slurmd" "$LOGDIR" "$FAKEGPU_DIR"

if [ -e /dev/nvidia0 ]; then
    GPUFILE="/dev/nvidia[0-$((NGPUS - 1))]"
else
    for i in $(seq 0 $((NGPUS - 1))); do ln -sfn /dev/null "$FAKEGPU_DIR/nvidia$i"; done
    GPUFILE="$FAKEGPU_DIR/nvidia[0-$((NGPUS - 1))]"
fi
[ "$NGPUS" = 1 ] && GPUFILE="${GPUFILE%\[0-0\]}0"

tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/slurm.conf" <<CONF
# Written by ci/slurm/up.sh -- single-node CI cluster, do not edit by hand.
ClusterName=neurobias-ci
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SwitchType=switch/none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# keep finished jobs visible to squeue for 10 min (snakemake's squeue status check needs it)
MinJobAge=600
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${STATE}/slurmctld
SlurmdSpoolDir=${STATE}/slurmd
SlurmctldPidFile=${RUN}/slurmctld.pid
SlurmdPidFile=${RUN}/slurmd.pid
SlurmctldLogFile=${LOGDIR}/slurmctld.log
SlurmdLogFile=${LOGDIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
GresTypes=gpu
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} Boards=1 SocketsPerBoard=${SOCKETS} CoresPerSocket=${CORES} ThreadsPerCore=${THREADS} RealMemory=${MEM} Gres=gpu:${NGPUS} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$tmp/gres.conf" <<CONF
# Written by ci/slurm/up.sh -- fake GPU(s): device file(s) are symlinks to /dev/null.
AutoDetect=off
NodeName=${HOST} Name=gpu File=${GPUFILE}
CONF

changed=0
for f in slurm.conf gres.conf; do
    if ! cmp -s "$tmp/$f" "$ETC/$f"; then
        install -m 644 "$tmp/$f" "$ETC/$f"; changed=1
    fi
done

# ---------------------------------------------------------------- 3. daemons
running() {  # running PIDFILE: pid alive and not a zombie (PID 1 may not reap here)
    local p st; [ -f "$1" ] || return 1; p="$(cat "$1" 2>/dev/null)"
    st="$(awk '{print $3}' /proc/"$p"/stat 2>/dev/null)"; [ -n "$st" ] && [ "$st" != Z ]
}
node_state() { sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null | head -n 1; }

if [ "$changed" = 1 ] && { running "$RUN/slurmctld.pid" || running "$RUN/slurmd.pid"; }; then
    log "config changed: restarting slurm daemons"
    "$(dirname "$0")/down.sh" --keep-munge
fi

# munge
if ! running /run/munge/munged.pid; then
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating munge key"
        if command -v mungekey >/dev/null; then mungekey -c -f -k /etc/munge/munge.key
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2*
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
fi
for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.25; done
munge -n | unmunge >/dev/null 2>&1 || fail "munge round trip failed"

if ! running "$RUN/slurmctld.pid"; then
    rm -f "$RUN/slurmctld.pid"
    # -c: clear saved state (fresh CI cluster), -i: ignore state read errors
    slurmctld -c -i || fail "slurmctld did not start"
fi
for _ in $(seq 1 40); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.25; done
if ! running "$RUN/slurmd.pid"; then
    rm -f "$RUN/slurmd.pid"
    slurmd || fail "slurmd did not start"
fi

# ---------------------------------------------------------------- 4. wait for idle
t0=$SECONDS; resumed=0
while :; do
    st="$(node_state)"
    case "$st" in
        idle|mix|alloc) break ;;
        down*|drain*|drng*)
            if [ "$resumed" = 0 ] && [ $((SECONDS - t0)) -ge 5 ]; then
                log "node is '$st', trying scontrol update state=resume"
                scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true; resumed=1
            fi ;;
    esac
    [ $((SECONDS - t0)) -ge "$TIMEOUT" ] && fail "node '$HOST' not idle after ${TIMEOUT}s (state: '${st:-?}')"
    sleep 0.5
done
log "node '$HOST' is $st after $((SECONDS - t0)) s"
sinfo
sinfo -h -N -o '%N gres=%G cpus=%c mem=%m'
