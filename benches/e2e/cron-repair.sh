#!/usr/bin/env bash
# The alternative to ipdrift that a hurried operator writes: a cron-style job that, every
# INTERVAL seconds, rewrites every running instance's A record (one nsupdate batch) and
# points every HAProxy server at the instance's private address (one socat line), without
# reading anything first. Stops by itself after DURATION seconds.
# Usage: benches/e2e/cron-repair.sh INSTANCES_JSON DNS_IP:PORT ZONE KEY_FILE HAPROXY_SOCKET BACKEND PORT INTERVAL_SECONDS DURATION_SECONDS
set -euo pipefail
if [ $# -ne 9 ]; then
    sed -n 's/^# Usage: /usage: /p' "$0" >&2
    exit 2
fi
instances=$1 dns=$2 zone=$3 key_file=$4 socket=$5 backend=$6 port=$7 interval=$8 duration=$9

deadline=$((SECONDS + duration))
while [ "$SECONDS" -lt "$deadline" ]; do
    {
        echo "server ${dns%:*} ${dns##*:}"
        echo "zone $zone"
        jq -r --arg zone "$zone" '.[] | select(.state == "running")
            | "update delete \(.name).\($zone) A\nupdate add \(.name).\($zone) 60 A \(.public_ipv4)"' "$instances"
        echo send
    } | nsupdate -k "$key_file"
    jq -r --arg backend "$backend" --arg port "$port" '[.[] | select(.state == "running")
        | "set server \($backend)/\(.name) addr \(.private_ipv4) port \($port)"] | join(";")' "$instances" \
        | socat - "UNIX-CONNECT:$socket" > /dev/null
    sleep "$interval"
done
