#!/usr/bin/env bash
# Median events/s and CPU s per million per receiver and payload, from recv report lines
# ("LABEL payload=N events=N RATE events/s CPU CPU s per million …") on stdin.
set -euo pipefail
awk '/payload=/ {
       for (i = 1; i <= NF; i++) if ($i ~ /^payload=/) break;
       label = $1; for (j = 2; j < i; j++) label = label " " $j;
       key = label " " $i; rate[key] = rate[key] " " $(i + 2); cpu[key] = cpu[key] " " $(i + 4) }
     END { for (k in rate) print k "|" rate[k] "|" cpu[k] }' |
  sort | while IFS='|' read -r key rates cpus; do
    median() { tr ' ' '\n' | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    printf '%-40s %10s events/s  (%s CPU s/M)\n' "$key" "$(echo "$rates" | median)" "$(echo "$cpus" | median)"
  done
