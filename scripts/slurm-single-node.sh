#!/usr/bin/env bash
# A real single-node Slurm on this machine (munge, slurmctld, slurmd), for the cluster tests
# (tests/pipelines/test_slurm.py) and for trying README's "Running on a cluster" commands on one machine.
#
#   scripts/slurm-single-node.sh start    install slurm-wlm + munge if missing (root + apt-get),
#                                         start the daemons, wait until the node is idle
#   scripts/slurm-single-node.sh stop     cancel this cluster's jobs, stop what start started
#   scripts/slurm-single-node.sh status   exit 0 when the node answers and takes jobs
#
# Both start and stop are idempotent. The config is /etc/slurm/slurm.conf (srun inside a job,
# as the Snakemake plugin's job step runs it, finds its config only there); state, spool,
# pid and log files live under $MEMDEDUP_SLURM_DIR (default /tmp/memdedup-slurm). The
# controller and the node listen on 127.0.0.1 only. Daemons are stopped by the pids they
# wrote, never by name; a munged that was already running is used and left running; an
# /etc/slurm/slurm.conf this script did not write is never touched (start refuses).
#
# Exit status of start: 0 running; 3 unavailable here (not root, no packages and no
# apt-get, a foreign slurm.conf); 1 the daemons did not come up. Either way the reason is
# printed and, when not 0, kept in $MEMDEDUP_SLURM_DIR/unavailable for the tests' skip line.
set -euo pipefail

DIR=${MEMDEDUP_SLURM_DIR:-/tmp/memdedup-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by memdedup scripts/slurm-single-node.sh; removed by its stop."
PARTITION=${MEMDEDUP_SLURM_PARTITION:-debug}
NODE=$(hostname -s)
REASON_FILE=$DIR/unavailable
MUNGE_PID=/run/munge/munged.pid

log() { echo "slurm-single-node: $*" >&2; }

# unavailable CODE MESSAGE: record why there is no Slurm here, print it, exit CODE.
unavailable() {
    local code=$1; shift
    { mkdir -p "$DIR" && echo "$*" > "$REASON_FILE"; } 2>/dev/null || true
    log "$*"
    exit "$code"
}

# alive PIDFILE NAME: the pid in PIDFILE when that process is alive and its command is NAME.
alive() {
    local pid
    [[ -r $1 ]] || return 1
    pid=$(tr -dc 0-9 < "$1")
    [[ -n $pid && -r /proc/$pid/comm ]] || return 1
    [[ $(cat "/proc/$pid/comm") == "$2"* ]] || return 1
    echo "$pid"
}

# stop_pid PIDFILE NAME: TERM the daemon named in PIDFILE (if it is NAME), wait, then KILL.
stop_pid() {
    local pid
    pid=$(alive "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { log "stopped $2 (pid $pid)"; return 0; }
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    log "killed $2 (pid $pid): it did not stop within 20 s"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true; }

install_packages() {
    local missing=()
    for exe in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch /usr/sbin/munged /usr/bin/munge; do
        [[ -x $exe ]] || missing+=("$exe")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null || unavailable 3 "slurm-wlm/munge are not installed (${missing[*]} missing) and there is no apt-get to install them"
    log "installing slurm-wlm and munge with apt-get (about a minute; log: $DIR/apt.log)"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge; } \
            > "$DIR/apt.log" 2>&1; then
        unavailable 3 "apt-get install slurm-wlm munge failed: $(tail -n 3 "$DIR/apt.log" | tr '\n' ' ')"
    fi
}

start_munge() {
    if munge_works; then
        return 0  # already running (ours from an earlier start, or the machine's): use it
    fi
    install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge /var/lib/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        head -c 1024 /dev/urandom > /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=$MUNGE_PID" \
        || unavailable 1 "munged did not start: $(tail -n 3 /var/log/munge/munged.log 2>/dev/null | tr '\n' ' ')"
    for _ in $(seq 50); do
        munge_works && break
        sleep 0.2
    done
    munge_works || unavailable 1 "munged started but 'munge -n | unmunge' fails"
    # Ours to stop: remember the pid it wrote.
    cp "$MUNGE_PID" "$DIR/munged.pid"
    log "started munged (pid $(cat "$DIR/munged.pid"))"
}

write_conf() {
    # The node as slurmd itself sees it (CPUs, sockets, cores, threads, memory), so it
    # never drains for "low socket*core*thread count" or "low RealMemory".
    local hw
    hw=$(/usr/sbin/slurmd -C | head -1 | sed -e "s/^NodeName=[^ ]* //")
    cat > "$DIR/slurm.conf.new" <<EOF
$MARK
ClusterName=memdedup-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# squeue keeps finished jobs this long: the Snakemake plugin's squeue status needs >= 120 s; the tests read the jobs back after a run of minutes.
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

cmd_start() {
    [[ $(id -u) -eq 0 ]] || unavailable 3 "not root: a single-node Slurm needs root (munge key, $CONF, slurmd)"
    mkdir -p "$DIR"
    rm -f "$REASON_FILE"
    install_packages
    if [[ -e $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
        unavailable 3 "$CONF exists and was not written by this script: not touching a configured Slurm"
    fi
    start_munge
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    write_conf
    if ! cmp -s "$DIR/slurm.conf.new" "$CONF" 2>/dev/null; then
        # A new or changed config: restart whatever runs on the old one.
        stop_pid "$DIR/slurmd.pid" slurmd
        stop_pid "$DIR/slurmctld.pid" slurmctld
        mkdir -p "$(dirname "$CONF")"
        cp "$DIR/slurm.conf.new" "$CONF"
    fi
    rm -f "$DIR/slurm.conf.new"
    if ! alive "$DIR/slurmctld.pid" slurmctld >/dev/null; then
        # A fresh controller: the state of an earlier cluster (its jobs) is not carried over.
        rm -rf "$DIR/state" && mkdir -p "$DIR/state"
        /usr/sbin/slurmctld -i \
            || unavailable 1 "slurmctld did not start: $(tail -n 5 "$DIR/log/slurmctld.log" 2>/dev/null | tr '\n' ' ')"
        log "started slurmctld"
    fi
    if ! alive "$DIR/slurmd.pid" slurmd >/dev/null; then
        /usr/sbin/slurmd \
            || unavailable 1 "slurmd did not start: $(tail -n 5 "$DIR/log/slurmd.log" 2>/dev/null | tr '\n' ' ')"
        log "started slurmd"
    fi
    local state=""
    for _ in $(seq 120); do
        state=$(node_state)
        case $state in
            idle|mixed|allocated|completing) break ;;
            down*|drain*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    case $state in
        idle|mixed|allocated|completing) ;;
        *) unavailable 1 "node $NODE is '${state:-not answering}' after 60 s: $(tail -n 3 "$DIR/log/slurmd.log" 2>/dev/null | tr '\n' ' ')" ;;
    esac
    log "node $NODE $state; partition $PARTITION; $(sinfo -h -n "$NODE" -o '%c CPUs, %m MB'); config $CONF; state and logs in $DIR"
}

cmd_stop() {
    if alive "$DIR/slurmctld.pid" slurmctld >/dev/null; then
        # This cluster's jobs first, so no job step outlives its slurmd.
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $jobs ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 50); do
                [[ -z $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    if [[ -e $CONF ]] && grep -qxF "$MARK" "$CONF"; then
        rm -f "$CONF"
    fi
    # munged only when this script started it, and it is still that process.
    if [[ -r $DIR/munged.pid ]]; then
        if pid=$(alive "$DIR/munged.pid" munged) && [[ $(tr -dc 0-9 < "$MUNGE_PID" 2>/dev/null) == "$pid" ]]; then
            stop_pid "$DIR/munged.pid" munged
        fi
        rm -f "$DIR/munged.pid"
    fi
}

cmd_status() {
    local ctld slurmd state
    ctld=$(alive "$DIR/slurmctld.pid" slurmctld) || ctld=-
    slurmd=$(alive "$DIR/slurmd.pid" slurmd) || slurmd=-
    state=$(node_state)
    echo "slurmctld pid $ctld, slurmd pid $slurmd, node $NODE ${state:-not answering}"
    case $state in
        idle|mixed|allocated|completing) return 0 ;;
        *) return 1 ;;
    esac
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
