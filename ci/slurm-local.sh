#!/usr/bin/env bash
# A real single-node SLURM cluster on localhost, for testing the workflow's SLURM profile.
#   ci/slurm-local.sh up     install (Debian packages) and start munge, mariadb, slurmdbd,
#                            slurmctld and slurmd; prints nothing else on success
#   ci/slurm-local.sh down   cancel jobs and stop exactly the daemons `up` started
# Needs root and apt (Debian 12). State, configs and PIDs live in $SLURM_LOCAL_DIR.
set -euo pipefail
STATE=${SLURM_LOCAL_DIR:-/tmp/protprof-slurm}
CONF=/etc/slurm
PASS=protprof-ci

log() { echo "slurm-local: $*" >&2; }
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "timed out waiting for $what"; tail -n 20 /var/log/slurm/*.log 2>/dev/null >&2 || true
  return 1
}
daemon() {  # daemon NAME USER COMMAND...: run in the foreground mode under start-stop-daemon
  local name=$1 user=$2; shift 2
  start-stop-daemon --start --background --make-pidfile --pidfile "$STATE/$name.pid" \
    --chuid "$user" --startas "$1" -- "${@:2}"
}

install() {
  local pkgs=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
  if ! dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  fi
}

write_configs() {
  mkdir -p "$CONF" /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld
  chown munge:munge /run/munge; chown mysql:mysql /run/mysqld
  local hw mem
  hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ RealMemory=[0-9]*//')
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  cat > "$CONF/slurm.conf" <<CFG
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
  cat > "$CONF/slurmdbd.conf" <<CFG
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
  chmod 600 "$CONF/slurmdbd.conf"
}

up() {
  if sinfo -h -o %t 2>/dev/null | grep -q idle && [ -s "$STATE/slurmd.pid" ]; then
    log "already up"; return 0
  fi
  mkdir -p "$STATE"
  install
  write_configs
  [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  daemon munged munge /usr/sbin/munged --foreground
  wait_for 20 munge bash -c 'munge -n | unmunge'
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  daemon mariadbd root /usr/sbin/mariadbd --user=mysql --skip-networking \
    --innodb-buffer-pool-size=256M --innodb-lock-wait-timeout=900
  wait_for 60 mariadb mariadb-admin ping
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
  daemon slurmdbd root /usr/sbin/slurmdbd -D
  wait_for 60 slurmdbd sacctmgr -n list cluster
  daemon slurmctld root /usr/sbin/slurmctld -D
  wait_for 60 slurmctld scontrol ping
  daemon slurmd root /usr/sbin/slurmd -D -N localhost
  wait_for 60 "node idle" bash -c 'sinfo -h -o %t | grep -q idle'
  log "up: $(sinfo -h -o '%P %D %t %c CPUs %m MB')"
}

down() {
  scancel --user root >/dev/null 2>&1 || true
  for name in slurmd slurmctld slurmdbd mariadbd munged; do
    if [ -s "$STATE/$name.pid" ]; then
      start-stop-daemon --stop --quiet --retry 10 --pidfile "$STATE/$name.pid" || true
      rm -f "$STATE/$name.pid"
    fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
