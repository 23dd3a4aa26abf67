#!/usr/bin/env bash
# Runs deploy/slurm/simulate-array.sbatch on a real, single-node Slurm and checks that the merged
# shards equal one whole run, byte for byte.
#
#   bash deploy/slurm/ci.sh BINARY
#
# For a fresh Debian 12 machine, as root, without systemd (CI); `apt-get update` must have run.
# It installs slurm-wlm and munge when missing, makes a munge key when there is none, starts
# munged (unless one already answers), slurmctld and slurmd (node "localhost", ports 16817 and
# 16818) with their configuration, state and logs in a temporary directory (nothing is written
# to /etc/slurm), submits the array with `sbatch --wait`, runs `udprange merge` on the parts and
# compares its output with `udprange simulate` of the same scenario and replications.
# On exit, also on failure (after the tails of the logs), it cancels what still runs, shuts
# Slurm down and stops every process of the run: those whose environment holds this run's
# SLURM_CONF (daemons, job steps, sbatch), and munged if it started it. A run that was killed
# before it could clean up is cleaned up by the next one.
#
# Environment: SCENARIO (default scenarios/busy-hour-enterprise.toml), REPLICATIONS (40),
# SHARDS (4).
set -euo pipefail

usage="usage: bash deploy/slurm/ci.sh BINARY (the udprange binary, e.g. target/debug/udprange)"
[[ $# -eq 1 ]] || {
    echo "$usage" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ -x $1 ]] || {
    echo "deploy/slurm/ci.sh: '$1' is not an executable file; $usage" >&2
    exit 2
}
bin=$(realpath "$1")
scenario=$(realpath "${SCENARIO:-$repo/scenarios/busy-hour-enterprise.toml}")
replications=${REPLICATIONS:-40}
shards=${SHARDS:-4}
job_script=$here/simulate-array.sbatch
# Ports of their own, so that a Slurm already on the machine is not disturbed.
ctld_port=16817
slurmd_port=16818
start=$SECONDS
unset SLURM_CONF

say() { printf '[slurm-ci %3ds] %s\n' "$((SECONDS - start))" "$*"; }
fail() {
    printf '[slurm-ci %3ds] FAIL: %s\n' "$((SECONDS - start))" "$*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || fail "must run as root (it starts munged, slurmctld and slurmd)"
[[ -r $scenario ]] || fail "cannot read the scenario $scenario"

# The processes of the run whose slurm.conf is $1: every one started with SLURM_CONF=$1.
run_pids() {
    local f
    while read -r f; do
        f=${f#/proc/}
        f=${f%/environ}
        [[ $f != "$$" && $f != "$BASHPID" ]] && echo "$f"
    done < <(grep -lszxF "SLURM_CONF=$1" /proc/[0-9]*/environ)
    return 0
}
# "pid (name)" for each pid.
describe() {
    local p
    for p in "$@"; do printf '%s(%s) ' "$p" "$(cat "/proc/$p/comm" 2>/dev/null)"; done
}
# munged, if the run in $1 started it (it lives on after `scontrol shutdown`).
stop_munged() {
    local pid i
    [[ -e $1/munged.started && -s $1/munge/munged.pid ]] || return 0
    pid=$(<"$1/munge/munged.pid")
    [[ -r /proc/$pid/stat && $(cut -d' ' -f2 "/proc/$pid/stat") == "(munged)" ]] || return 0
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        [[ -r /proc/$pid/stat && $(cut -d' ' -f3 "/proc/$pid/stat") != Z ]] || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}
# Stops everything of the run in directory $1: what runs in Slurm first (so that no job step
# waits on a daemon that is gone), then the daemons, then whatever is left, then munged.
stop_run() {
    local dir=$1 conf=$1/slurm.conf i p pids=()
    # A waiting `sbatch --wait` (and its `timeout`) first: it only polls.
    mapfile -t pids < <(run_pids "$conf")
    for p in "${pids[@]}"; do
        [[ $(cat "/proc/$p/comm" 2>/dev/null) == @(sbatch|timeout) ]] && kill "$p" 2>/dev/null
    done
    if [[ -f $conf ]] && SLURM_CONF=$conf timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then
        SLURM_CONF=$conf timeout 10 scancel --partition=ci >/dev/null 2>&1
        for ((i = 0; i < 50; i++)); do
            [[ -z $(SLURM_CONF=$conf timeout 5 squeue -h 2>/dev/null) ]] && break
            sleep 0.2
        done
        SLURM_CONF=$conf timeout 10 scontrol shutdown >/dev/null 2>&1
    fi
    for ((i = 0; i < 100; i++)); do
        mapfile -t pids < <(run_pids "$conf")
        [[ ${#pids[@]} -eq 0 ]] && break
        if ((i == 50)); then # 5 s after the shutdown
            say "still running 5 s after scontrol shutdown, sending SIGTERM: $(describe "${pids[@]}")"
            kill "${pids[@]}" 2>/dev/null
        fi
        sleep 0.1
    done
    mapfile -t pids < <(run_pids "$conf")
    if [[ ${#pids[@]} -gt 0 ]]; then # slurmd told to shut down ignores SIGTERM while a step hangs
        say "still running after SIGTERM, sending SIGKILL: $(describe "${pids[@]}")"
        kill -9 "${pids[@]}" 2>/dev/null
        sleep 0.5
    fi
    stop_munged "$dir"
}

# One run at a time (the ports are fixed). The daemons and sbatch get `9>&-` so that the lock
# does not outlive this script in them.
exec 9>/run/udprange-slurm-ci.lock
flock -n 9 || fail "another deploy/slurm/ci.sh is running (lock /run/udprange-slurm-ci.lock)"

# 0. Leftovers of an earlier run that was killed before its cleanup ran.
for old in /tmp/udprange-slurm-ci.*; do
    [[ -d $old ]] || continue
    say "cleaning up after an earlier run: $old"
    (set +e && stop_run "$old")
    rm -rf "$old"
done

# 1. Packages.
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
    command -v munged >/dev/null; then
    say "slurm-wlm and munge already installed ($(slurmctld -V))"
else
    say "installing slurm-wlm and munge (apt-get install)"
    apt_log=$(mktemp)
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >"$apt_log" 2>&1; then
        tail -n 30 "$apt_log" >&2
        rm -f "$apt_log"
        fail "apt-get install -y slurm-wlm munge failed (has apt-get update run?)"
    fi
    rm -f "$apt_log"
    say "installed $(slurmctld -V)"
fi
for tool in munged munge unmunge slurmctld slurmd sbatch scontrol scancel squeue sinfo runuser; do
    command -v "$tool" >/dev/null || fail "$tool not found after installing slurm-wlm and munge"
done

tmp=$(mktemp -d /tmp/udprange-slurm-ci.XXXXXX)
chmod 755 "$tmp" # munged (user munge) and the job steps look into it
conf=$tmp/slurm.conf

dump_logs() {
    local log
    for log in "$tmp"/slurmctld.log "$tmp"/slurmd.log "$tmp"/munge/munged.log "$tmp"/job/*.out; do
        [[ -s $log ]] || continue
        echo "---- tail of $log" >&2
        tail -n 25 "$log" >&2
    done
}
cleanup() {
    local status=$?
    set +e
    trap - INT TERM
    [[ $status -ne 0 ]] && dump_logs
    unset SLURM_CONF
    stop_run "$tmp"
    local left
    mapfile -t left < <(run_pids "$conf")
    if [[ ${#left[@]} -gt 0 ]]; then
        echo "[slurm-ci] still running after the cleanup: $(describe "${left[@]}")(kept $tmp)" >&2
        status=1
    else
        say "stopped what this run started"
        rm -rf "$tmp"
    fi
    [[ $status -ne 0 ]] && echo "[slurm-ci] FAILED (exit $status) after $((SECONDS - start)) s" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 2. munge: key, daemon, a credential round trip.
key=/etc/munge/munge.key
if [[ ! -s $key ]]; then
    say "no $key: creating one"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$key"
    else
        dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
    fi
fi
chown munge:munge "$key"
chmod 0400 "$key"
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running: using it (and leaving it running)"
else
    say "starting munged"
    install -d -o munge -g munge -m 0700 "$tmp/munge"
    touch "$tmp/munged.started"
    runuser -u munge -- munged --pid-file="$tmp/munge/munged.pid" --log-file="$tmp/munge/munged.log" 9>&- ||
        fail "munged did not start"
    for ((i = 0; i < 50; i++)); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n | unmunge >/dev/null || fail "munge -n | unmunge: munged does not answer"
fi

# 3. Slurm: one node, named localhost, everything under $tmp.
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/job" "$tmp/parts"
cpus=$(nproc)
cat >"$conf" <<EOF
# Written by deploy/slurm/ci.sh: a single-node cluster for one CI run.
ClusterName=udprange-ci
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$conf # from here on, every process started carries it: see run_pids
say "wrote $conf (node localhost, $cpus CPUs, ports $ctld_port/$slurmd_port)"

say "starting slurmctld"
slurmctld 9>&- || fail "slurmctld did not start"
for ((i = 0; i < 100; i++)); do
    scontrol ping 2>/dev/null | grep -q 'is UP' && break
    sleep 0.2
done
scontrol ping | grep -q 'is UP' || fail "slurmctld does not answer scontrol ping"

say "starting slurmd -N localhost"
slurmd -N localhost 9>&- || fail "slurmd did not start"
state=
for ((i = 0; i < 100; i++)); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 0.2
done
[[ $state == idle ]] || fail "node localhost is '${state:-unknown}', not idle, 20 s after slurmd started"
say "node localhost is idle"

# 4. The job array, as a user submits it.
say "sbatch --wait --array=0-$((shards - 1)) $job_script $scenario $replications"
job_start=$SECONDS
# In the background, so that a signal to this script is handled at once (bash defers traps
# while a foreground command runs).
timeout 180 sbatch --wait --array="0-$((shards - 1))" --cpus-per-task=1 \
    --output="$tmp/job/%A_%a.out" --chdir="$tmp" \
    --export="ALL,UDPRANGE=$bin,PARTS=$tmp/parts" \
    "$job_script" "$scenario" "$replications" >"$tmp/sbatch.out" 2>&1 9>&- &
if ! wait $!; then
    cat "$tmp/sbatch.out" >&2
    fail "sbatch --wait: the array did not complete (a task failed or it timed out)"
fi
cat "$tmp/sbatch.out"
job=$(grep -o 'Submitted batch job [0-9]*' "$tmp/sbatch.out" | grep -o '[0-9]*$') ||
    fail "no job id in sbatch's output"
say "array job $job finished in $((SECONDS - job_start)) s:"
scontrol -o show job "$job" 2>/dev/null | grep -o 'ArrayTaskId=[0-9]* .*JobState=[A-Z]*' |
    sed -E 's/ JobName.*JobState=/ JobState=/; s/^/  /' | sort -t= -k2n || true
for log in "$tmp"/job/*.out; do
    sed 's/^/  /' "$log"
done
for ((t = 0; t < shards; t++)); do
    [[ -s $tmp/parts/part-$t.json ]] || fail "task $t wrote no $tmp/parts/part-$t.json"
done

# 5. Merge the parts and compare with one whole run.
parts=()
for ((t = 0; t < shards; t++)); do parts+=("$tmp/parts/part-$t.json"); done
"$bin" merge "${parts[@]}" --format json >"$tmp/merged.json" || fail "udprange merge failed"
"$bin" simulate "$scenario" --replications "$replications" --format json >"$tmp/whole.json" ||
    fail "udprange simulate (the whole run) failed"
# The first three keys are each run's provenance (version, command line, start time), one
# line each; the result after them must be the same byte for byte.
sed '2,4d' "$tmp/merged.json" >"$tmp/merged.result.json"
sed '2,4d' "$tmp/whole.json" >"$tmp/whole.result.json"
grep -q '"udprange_version"' "$tmp/merged.json" || fail "the merge's JSON carries no provenance"
if ! cmp -s "$tmp/merged.result.json" "$tmp/whole.result.json"; then
    diff -u "$tmp/whole.result.json" "$tmp/merged.result.json" | head -n 40 >&2 || true
    fail "the merge of $shards shards differs from the whole run"
fi
"$bin" merge "${parts[@]}" >"$tmp/merged.txt"
"$bin" simulate "$scenario" --replications "$replications" >"$tmp/whole.txt"
cmp -s "$tmp/merged.txt" "$tmp/whole.txt" || fail "the merged text report differs from the whole run's"
say "merge of $shards shards == whole run, byte for byte after the provenance ($(wc -c <"$tmp/merged.result.json") bytes of JSON, and the text report)"
say "PASS: $replications replications of $(basename "$scenario") as a $shards-task Slurm array in $((SECONDS - start)) s"
