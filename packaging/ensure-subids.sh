#!/bin/sh
# Gives the installing user (sudo's caller) a subordinate id range if they
# have none, the way useradd does for new users, so `kennel run` can map a
# full range at once. Existing entries are never changed.
set -eu
user="${1:-}"
[ -n "$user" ] && [ "$user" != root ] || exit 0
touch /etc/subuid /etc/subgid
has_entry() { awk -F: -v u="$user" '$1 == u { found = 1 } END { exit !found }' "$1"; }
if has_entry /etc/subuid && has_entry /etc/subgid; then exit 0; fi
# The block `kennel doctor` suggests (kennel_idmap::free_block): the first
# 65536-aligned block of 65536 ids at or above 100000 that no line of
# either file overlaps, in a gap between entries if one is big enough, so
# the same block goes into both files and is nobody else's.
if ! start=$(awk -F: '
  !/^[ \t]*#/ && NF >= 3 && $3 + 0 > 0 { n++; lo[n] = $2 + 0; hi[n] = $2 + $3 }
  END {
    b = 65536; start = int((100000 + b - 1) / b) * b
    do {
      moved = 0
      for (i = 1; i <= n; i++)
        if (lo[i] < start + b && hi[i] > start) { start = int((hi[i] + b - 1) / b) * b; moved = 1 }
    } while (moved)
    if (start + b > 4294967295) exit 1
    printf "%.0f\n", start
  }' /etc/subuid /etc/subgid); then
  echo "kennel: no block of 65536 subordinate ids is free in /etc/subuid and /etc/subgid; give $user one by hand (usermod --add-subuids, --add-subgids)" >&2
  exit 0
fi
for f in /etc/subuid /etc/subgid; do
  if has_entry "$f"; then continue; fi
  # A last line without its newline would swallow ours.
  if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi
  echo "$user:$start:65536" >> "$f"
  echo "kennel: added $user:$start:65536 to $f"
done
