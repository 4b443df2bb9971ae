#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for testing the workflow's SLURM profile.
#   ci/slurm-local.sh up     install (Debian packages) and start munge, mariadb, slurmdbd,
#                            slurmctld and slurmd; prints one line on success
#   ci/slurm-local.sh check  only the checks `up` makes before changing anything
#   ci/slurm-local.sh down   cancel this cluster's jobs and stop exactly the daemons `up`
#                            started, by the PIDs it recorded
#   ci/slurm-local.sh show slurm.conf|slurmdbd.conf
#                            print the file `up` would write there; changes nothing
# Needs root and apt (Debian 12). It changes the system (packages, /etc/slurm, daemons), so it
# runs only where that is wanted: under CI=true (a disposable CI machine) or with
# PROTPROF_SLURM_LOCAL=1; otherwise it exits non-zero and changes nothing.
# Even then it refuses to overwrite a file it did not write (slurm.conf, slurmdbd.conf, the
# munge key) or to start beside a SLURM, munge or MariaDB daemon it did not start: every file
# it writes carries a header line and is recorded, with its checksum, in $STATE/written.
# The record lives as long as the files it vouches for (not in /tmp, which a reboot clears
# while /etc stays). A file whose record was lost anyway is still taken as this script's when
# it starts with the header and is otherwise what `show` prints, apart from the lines filled
# in from this machine (the node's hardware) and from the state folder (slurmdbd's PID file).
#   SLURM_LOCAL_DIR   state, PIDs and the record of written files
#                     (default /var/lib/protprof-slurm-local)
#   SLURM_LOCAL_CONF  the SLURM configuration folder (default /etc/slurm)
set -euo pipefail
STATE=${SLURM_LOCAL_DIR:-/var/lib/protprof-slurm-local}
CONF=${SLURM_LOCAL_CONF:-/etc/slurm}
MUNGE_KEY=/etc/munge/munge.key
MYSQL_DATA=/var/lib/mysql
WRITTEN=$STATE/written
HEADER_START="# Written by protprof's ci/slurm-local.sh"
HEADER="$HEADER_START (recorded in $WRITTEN); it rewrites only its own files."
PASS=protprof-ci
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)  # in the order `down` stops them

log() { echo "slurm-local: $*" >&2; }
refuse() { log "refusing: $*"; exit 3; }

allowed() {
  if [ "${CI:-}" != "true" ] && [ "${PROTPROF_SLURM_LOCAL:-}" != "1" ]; then
    refuse "this script changes the system (installs packages, writes $CONF, starts and stops" \
      "daemons as root); set PROTPROF_SLURM_LOCAL=1 (or CI=true on a disposable machine) to" \
      "allow it. Nothing changed."
  fi
}

# The record: `sha256  path` lines (sha256sum's format), one per file this script wrote.
# A file is ours if it is recorded and unchanged since, or (the record lost, or an `up` cut
# between writing a file and recording it) if it starts with the header and the rest is what
# `show` prints now, apart from the values read from this machine: the node's hardware and
# memory figures, and slurmdbd's PID file in the state folder. The MariaDB marker holds the
# header alone. Overwriting such a file rewrites what is there.
ours() {  # ours PATH
  local line
  line=$(recorded "$1") || true
  if [ -n "$line" ] && echo "$line" | sha256sum --check --status 2>/dev/null; then
    return 0
  fi
  as_shown "$1"
}
as_shown() {  # as_shown PATH: the header, then what `show` prints (machine values aside)
  local path=$1 name
  [ -f "$path" ] && [ "$(head -c ${#HEADER_START} "$path")" = "$HEADER_START" ] || return 1
  name=$(basename "$path")
  case "$name" in
    protprof-slurm-local) [ "$(wc -l < "$path")" -eq 1 ] ;;
    slurm.conf | slurmdbd.conf)
      diff -q <(tail -n +2 "$path" | machine_values_out) \
        <(show "$name" | tail -n +2 | machine_values_out) >/dev/null ;;
    *) return 1 ;;
  esac
}
# The node line with numeric hardware fields only (CPUs=, Boards=, ..., RealMemory=) and the
# PID file of slurmdbd in a state folder become placeholders; any other line, or a node line
# with anything more (Gres=, Features=, another node), is compared as it is.
machine_values_out() {
  sed -E \
    -e 's/^NodeName=localhost NodeAddr=127\.0\.0\.1 CPUs=[0-9]+( [A-Za-z]+=[0-9]+)* RealMemory=[0-9]+ State=UNKNOWN$/NodeName=localhost (this machine)/' \
    -e 's|^PidFile=/[^ ]*/slurmdbd-internal\.pid$|PidFile=(state folder)/slurmdbd-internal.pid|'
}
recorded() {  # recorded PATH: its line in the record (64 hex digits, 2 spaces, the path)
  [ -f "$WRITTEN" ] && awk -v p="$1" 'substr($0, 67) == p' "$WRITTEN" | tail -n 1
}
record() {  # record PATH...: after writing them
  local path
  for path in "$@"; do
    if [ -f "$WRITTEN" ]; then
      awk -v p="$path" 'substr($0, 67) != p' "$WRITTEN" > "$WRITTEN.new"
      mv "$WRITTEN.new" "$WRITTEN"
    fi
    sha256sum "$path" >> "$WRITTEN"
  done
}
# A daemon is ours if its PID file (in $STATE) was written since the last boot (the boot ID
# `up` recorded: after a reboot the same PID may be a packaged daemon that systemd started)
# and names a live process running that program.
BOOT_ID=/proc/sys/kernel/random/boot_id
pid_of() {  # pid_of NAME: our daemon's PID, if it runs
  local pid
  [ -s "$STATE/$1.pid" ] && [ "$(cat "$STATE/boot_id" 2>/dev/null)" = "$(cat "$BOOT_ID")" ] \
    || return 1
  pid=$(cat "$STATE/$1.pid")
  # /proc names the program's real file: Debian's /usr/sbin/slurmctld is a link to slurmctld-wlm.
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "/usr/sbin/$1")" ] && echo "$pid"
}
stale_pid_file() {  # stale_pid_file NAME: its PID file names no live process of this boot
  local pid
  [ "$(cat "$STATE/boot_id" 2>/dev/null)" = "$(cat "$BOOT_ID")" ] || return 0
  pid=$(cat "$STATE/$1.pid" 2>/dev/null) || return 0
  ! alive "$pid"
}
alive() {  # alive PID: a process that has not exited (a zombie has)
  local state
  state=$(sed -e 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# Everything `up` would overwrite or run beside, checked before it changes anything.
check_foreign() {
  local file name pid mine
  for file in "$CONF/slurm.conf" "$CONF/slurmdbd.conf"; do
    if [ -e "$file" ] && ! ours "$file"; then
      refuse "$file exists and was not written by this script (or was changed since): it" \
        "may configure a real cluster. Nothing changed."
    fi
  done
  if [ -d "$MYSQL_DATA/mysql" ] && ! ours "$MYSQL_DATA/protprof-slurm-local"; then
    refuse "a MariaDB/MySQL data folder $MYSQL_DATA exists that this script did not create." \
      "Nothing changed."
  fi
  for name in "${DAEMONS[@]}" mysqld; do
    mine=$(pid_of "$name" || true)
    for pid in $(pgrep -x "$name" || true); do
      if [ "$pid" != "$mine" ] && alive "$pid"; then
        refuse "$name (PID $pid) runs and was not started by this script. Nothing changed."
      fi
    done
  done
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "timed out waiting for $what"; tail -n 20 /var/log/slurm/*.log 2>/dev/null >&2 || true
  return 1
}
daemon() {  # daemon NAME USER ARGS...: /usr/sbin/NAME in the foreground under start-stop-daemon
  local name=$1 user=$2; shift 2
  start-stop-daemon --start --background --make-pidfile --pidfile "$STATE/$name.pid" \
    --oknodo --chuid "$user" --exec "/usr/sbin/$name" -- "$@"
}

install() {
  local pkgs=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
  if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
}

show() {  # show slurm.conf|slurmdbd.conf: the file `up` writes there
  local hw mem
  case "$1" in
    slurm.conf)
      # The node's hardware as slurmd sees it (before SLURM is installed: the CPU count alone).
      hw=$(slurmd -C 2>/dev/null | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//') \
        || true
      [ -n "$hw" ] || hw="CPUs=$(nproc)"
      mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
      cat <<CFG
$HEADER
ClusterName=protprof
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
MinJobAge=300
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 $hw RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CFG
      ;;
    slurmdbd.conf)
      cat <<CFG
$HEADER
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$PASS
StorageLoc=slurm_acct_db
LogFile=/var/log/slurm/slurmdbd.log
PidFile=$STATE/slurmdbd-internal.pid
CFG
      ;;
    *) echo "usage: $0 show slurm.conf|slurmdbd.conf" >&2; exit 2 ;;
  esac
}

write_configs() {
  mkdir -p "$CONF" /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld
  show slurm.conf > "$CONF/slurm.conf"
  (umask 077; show slurmdbd.conf > "$CONF/slurmdbd.conf")
  chmod 600 "$CONF/slurmdbd.conf"
  record "$CONF/slurm.conf" "$CONF/slurmdbd.conf"
}

up() {
  allowed
  if [ -n "$(pid_of slurmd)" ] && [ -n "$(pid_of slurmctld)" ] && sinfo -h -o %t 2>/dev/null | grep -q idle; then
    log "already up"; return 0
  fi
  check_foreign
  mkdir -p "$STATE"
  if [ "$(cat "$STATE/boot_id" 2>/dev/null)" != "$(cat "$BOOT_ID")" ]; then
    rm -f "$STATE"/*.pid  # from before a reboot: they name nothing of ours
    cat "$BOOT_ID" > "$STATE/boot_id"  # the PID files written from here belong to this boot
  fi
  install
  write_configs
  if [ ! -s "$MUNGE_KEY" ]; then  # Debian's munge package normally creates one: used as it is
    mungekey --create 2>/dev/null || create-munge-key -f
    chown munge:munge "$MUNGE_KEY"; chmod 400 "$MUNGE_KEY"
    record "$MUNGE_KEY"
  fi
  daemon munged munge --foreground
  wait_for 20 munge bash -c 'munge -n | unmunge'
  if [ ! -d "$MYSQL_DATA/mysql" ]; then
    mariadb-install-db --user=mysql >/dev/null
  fi
  # The data folder is new (the package or the line above made it) or already marked as this
  # script's (check_foreign refused any other): mark it, and record the mark.
  echo "$HEADER" > "$MYSQL_DATA/protprof-slurm-local"
  record "$MYSQL_DATA/protprof-slurm-local"
  daemon mariadbd root --user=mysql --skip-networking \
    --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900
  wait_for 60 mariadb mariadb-admin ping
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  daemon slurmdbd root -D
  wait_for 60 slurmdbd sacctmgr -n list cluster
  daemon slurmctld root -D
  wait_for 60 slurmctld scontrol ping
  daemon slurmd root -D -N localhost
  wait_for 60 "node idle" bash -c 'sinfo -h -o %t | grep -q idle'
  log "up: $(sinfo -h -o '%P %D %t %c CPUs %m MB')"
}

down() {
  allowed
  local name pid
  if [ -n "$(pid_of slurmctld || true)" ]; then  # our controller: the jobs are this cluster's
    scancel --user root >/dev/null 2>&1 || true
  fi
  for name in "${DAEMONS[@]}"; do
    [ -e "$STATE/$name.pid" ] || continue
    if pid=$(pid_of "$name"); then
      start-stop-daemon --stop --quiet --retry 10 --pid "$pid" --exec "/usr/sbin/$name" || true
    fi
    # Forget a PID only once nothing runs under it: a daemon left running stays known.
    if stale_pid_file "$name"; then
      rm -f "$STATE/$name.pid"
    else
      log "kept $STATE/$name.pid: PID $(cat "$STATE/$name.pid") still runs (not $name, or it" \
        "did not stop); nothing else was stopped under it"
    fi
  done
}

case "${1:-}" in
  check) allowed; check_foreign ;;
  show) show "${2:-}" ;;
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down|check|show FILE" >&2; exit 2 ;;
esac
