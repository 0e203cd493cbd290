#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for the workflow's Slurm test.
#   bash .ci/slurm.sh up     install (Debian packages) and start munge, slurmctld, slurmd
#   bash .ci/slurm.sh down   stop them
# Needs root. State lives in $SLURM_SCRATCH (default /tmp/prune-tts-slurm). The node declares
# $SLURM_FAKE_GPUS (default 4) GPUs backed by plain files, so jobs asking --gpus=N are accepted
# and their requests can be read back; nothing gives them a real device.
set -euo pipefail
scratch=${SLURM_SCRATCH:-/tmp/prune-tts-slurm}
host=$(hostname -s)
gpus=${SLURM_FAKE_GPUS:-4}

up() {
  if ! command -v slurmctld >/dev/null; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d  # no service starts during install
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
  getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >> /etc/hosts
  mkdir -p /run/munge "$scratch"/{state,spool,log}
  chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
  munge -n | unmunge >/dev/null
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))
  mkdir -p /etc/slurm
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=prunetts
GresTypes=gpu
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$scratch/log/jobcomp.txt
MinJobAge=300
ReturnToService=2
StateSaveLocation=$scratch/state
SlurmdSpoolDir=$scratch/spool
SlurmctldLogFile=$scratch/log/slurmctld.log
SlurmdLogFile=$scratch/log/slurmd.log
SlurmctldPidFile=$scratch/slurmctld.pid
SlurmdPidFile=$scratch/slurmd.pid
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:$gpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
  # slurmd counts a GPU per device file; plain files stand in for them (no cgroup device limits here)
  : > /etc/slurm/gres.conf
  for i in $(seq 0 $((gpus - 1))); do
    touch "$scratch/gpu$i"
    echo "NodeName=$host Name=gpu File=$scratch/gpu$i" >> /etc/slurm/gres.conf
  done
  # the daemons alone go to the background, with no handle on this script's output
  if ! pgrep -x slurmctld >/dev/null; then
    setsid slurmctld -D -i >"$scratch/log/slurmctld.out" 2>&1 </dev/null &
  fi
  if ! pgrep -x slurmd >/dev/null; then
    setsid slurmd -D >"$scratch/log/slurmd.out" 2>&1 </dev/null &
  fi
  for _ in $(seq 60); do
    if scontrol ping >/dev/null 2>&1 && [ "$(sinfo -h -o %t 2>/dev/null | head -n1)" = idle ]; then
      echo "slurm is up: $(sinfo -h -o '%P %D %t %c cpus %m MB')"
      return 0
    fi
    sleep 1
  done
  echo "slurm did not become idle; logs in $scratch/log" >&2
  return 1
}

down() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  echo "slurm stopped"
}

"${1:-up}"
