#!/bin/sh
# Gives the installing user (sudo's caller) a subordinate id range if they
# have none, the way useradd does for new users, so `kennel run` can map a
# full range at once. Existing entries are never changed.
set -eu
user="${1:-}"
[ -n "$user" ] && [ "$user" != root ] || exit 0
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if grep -q "^$user:" "$f"; then continue; fi
  # First free 65536-aligned block at or above 100000 not used by anyone.
  start=$(awk -F: 'BEGIN { s = 100000 } NF == 3 { e = $2 + $3; if (e > s) s = e } END { print int((s + 65535) / 65536) * 65536 }' "$f")
  echo "$user:$start:65536" >> "$f"
  echo "kennel: added $user:$start:65536 to $f"
done
