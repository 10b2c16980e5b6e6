"""The cgroup and systemd cases, as shell scripts run inside the test VM.

Each case prints what the test then asserts on; `run_batch` runs them all
in one boot. kuser cases run inside kuser's systemd user manager, root
cases as root. Every script builds its own busybox rootfs (cheap), so cases
stay independent.
"""

ROOTFS = r'''
R=$(mktemp -d)
mkdir -p "$R/bin" "$R/etc" "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run"
cp /bin/busybox "$R/bin/"
for a in sh cat echo sleep seq head tr dd ls grep wc id true false kill ps; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
'''

# systemd removes an empty scope's cgroup asynchronously: allow it a moment.
LEFTOVERS = r'''
for i in $(seq 20); do
  [ -z "$(find /sys/fs/cgroup -name 'kennel-*' ! -name kennel-supervisor -type d 2>/dev/null)" ] && break; sleep 0.25
done
echo "LEFT-UNITS: $(systemctl --user list-units --all --no-legend 'kennel-*' 2>/dev/null | wc -l)"
echo "LEFT-CGROUPS: $(find /sys/fs/cgroup -name 'kennel-*' ! -name kennel-supervisor -type d 2>/dev/null | wc -l)"
find /sys/fs/cgroup -name 'kennel-*' ! -name kennel-supervisor -type d 2>/dev/null | sed 's/^/LEFT-PATH: /'
'''

CASES = {
    # A login-shell-like process in the user manager: no delegated cgroup of
    # its own, so kennel asks the user manager for a scope over D-Bus.
    "rootless_scope_limits": ("kuser", ROOTFS + r'''
kennel --verbose run --cgroup-manager systemd --rootfs "$R" --memory 64M --memory-swap 64M --pids-limit 50 --cpus 0.5 \
  --cpu-weight 200 --io-weight 300 -- sh -c '
  echo "INSIDE-CGROUP: $(cat /proc/self/cgroup)"
  echo "MEMORY-MAX: $(cat /sys/fs/cgroup/memory.max)"
  echo "SWAP-MAX: $(cat /sys/fs/cgroup/memory.swap.max)"
  echo "PIDS-MAX: $(cat /sys/fs/cgroup/pids.max)"
  echo "CPU-MAX: $(cat /sys/fs/cgroup/cpu.max)"
  echo "CPU-WEIGHT: $(cat /sys/fs/cgroup/cpu.weight)"
  echo "IO-WEIGHT: $(cat /sys/fs/cgroup/io.weight)"
  echo "CONTROLLERS: $(cat /sys/fs/cgroup/cgroup.controllers)"
  touch /sys/fs/cgroup/x 2>/dev/null && echo CGROUP-WRITABLE || echo CGROUP-READONLY
'
echo "RC: $?"
''' + LEFTOVERS, 120),

    # The case's own user service is kuser's to write but has only memory and
    # pids: a cpu limit sends auto to a systemd scope, which has cpu.
    "auto_scope_for_missing_controller": ("kuser", ROOTFS + r'''
echo "UNIT-CONTROLLERS: $(cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/cgroup.controllers)"
kennel --verbose run --rootfs "$R" --cpus 0.5 -- sh -c 'echo "CPU-MAX: $(cat /sys/fs/cgroup/cpu.max)"'
echo "RC: $?"
kennel --verbose run --rootfs "$R" --pids-limit 30 -- sh -c 'echo "PIDS-MAX: $(cat /sys/fs/cgroup/pids.max)"'
echo "RC2: $?"
''' + LEFTOVERS, 120),

    "oom_kill_reported": ("kuser", ROOTFS + r'''
# In a scope of its own: an OOM kill inside the case's own unit would make
# systemd stop that unit (OOMPolicy=stop), this script included.
kennel run --cgroup-manager systemd --rootfs "$R" --memory 32M --memory-swap 32M -- sh -c 'x=$(head -c 200000000 /dev/zero | tr "\0" a); echo survived'
echo "RC: $?"
''' + LEFTOVERS, 120),

    "pids_limit_stops_fork_bomb": ("kuser", ROOTFS + r'''
kennel run --rootfs "$R" --pids-limit 20 -- sh -c '
  (i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null
  # Builtins only from here: the limit leaves no room for another fork.
  read n < /sys/fs/cgroup/pids.current; echo "PIDS-CURRENT: $n"
  read k v < /sys/fs/cgroup/pids.events; echo "PIDS-EVENTS: $k $v"
'
echo "RC: $?"
# A limit of one process: the network namespace's maker is the runner's,
# outside the container's cgroup, so it does not count; lo still up.
kennel run --rootfs "$R" --pids-limit 1 -- sh -c '
  read m < /sys/fs/cgroup/pids.max; read f < /sys/class/net/lo/flags; echo "ONE-PID: max=$m lo=$f"'
echo "RC-ONE: $?"
''' + LEFTOVERS, 120),

    "stats_of_named_container": ("kuser", ROOTFS + r'''
kennel run --name statme --rootfs "$R" --memory 64M -- sleep 20 &
for i in $(seq 50); do kennel ps --format json | grep -q statme && break; sleep 0.2; done
kennel stats statme --format json | tr -d '\n '; echo
kennel ps
kennel kill statme
wait
''' + LEFTOVERS, 120),

    "no_bus_is_a_clear_error": ("kuser", ROOTFS + r'''
export DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent/bus
kennel run --rootfs "$R" --cgroup-manager systemd -- true; echo "RC-SYSTEMD: $?"
kennel run --rootfs "$R" --cgroup-manager systemd --memory 64M -- true; echo "RC-SYSTEMD-LIMIT: $?"
kennel run --rootfs "$R" --cgroup-manager disabled -- true; echo "RC-DISABLED: $?"
kennel run --rootfs "$R" --cgroup-manager disabled --memory 64M -- true; echo "RC-DISABLED-LIMIT: $?"
''' + LEFTOVERS, 120),

    "controller_not_delegated": ("kuser", ROOTFS + r'''
systemd-run --user --scope -p Delegate=yes --quiet sh -c '
  CG=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)
  # The scope enables no controller for its children: "child" has none.
  mkdir "$CG/child"
  kennel run --rootfs "'"$R"'" --cgroup-manager cgroupfs --cgroup-parent "$CG/child" --memory 64M -- true
  echo "RC: $?"
  ls "$CG/child"  | grep -c kennel- || true
'
''', 120),

    "no_leftovers_after_failures": ("kuser", ROOTFS + r'''
kennel run --rootfs "$R" --memory 64M -- no-such-command; echo "RC-NOTFOUND: $?"
kennel run --rootfs "$R" --cpu-weight 20000 -- true; echo "RC-BADLIMIT: $?"
kennel run --rootfs "$R" --cgroup-manager systemd --memory 64M -- sleep 60 &
KP=$!
sleep 2
kill -9 $KP
sleep 3
echo "SLEEPERS: $(pgrep -u kuser -x sleep | wc -l)"
''' + LEFTOVERS, 120),

    # The kill matrix on a real cgroup: kennel stopped at each sync point
    # of the start (KENNEL_TEST_STOP_AT), in a systemd scope with a limit,
    # then the stopped process or the other one SIGKILLed. Afterwards no
    # process, scope, cgroup leaf or record may remain, and the name runs
    # again.
    "kill_matrix_cgroup": ("kuser", ROOTFS + r'''
APP=/sys/fs/cgroup/user.slice/user-$(id -u).slice/user@$(id -u).service/app.slice
leftover() {
  echo "procs=$(pgrep -u kuser -f 'sleep 1000[.]5' | wc -l)" \
    "stopped=$(pgrep -u kuser -x kennel-stopped | wc -l)" \
    "cgroup=$([ -d "$APP/kennel-km.scope" ] && echo 1 || echo 0)" \
    "unit=$(systemctl --user is-active kennel-km.scope 2>/dev/null)" \
    "listed=$(kennel ps | grep -c '^km ')"
}
CLEAN="procs=0 stopped=0 cgroup=0 unit=inactive listed=0"
for p in cloned maps-written child-mapped root-built before-exec; do
  for victim in stopped other; do
    KENNEL_TEST_STOP_AT=$p kennel run --cgroup-manager systemd --name km --rootfs "$R" --memory 64M \
      -- sleep 1000.5 >/dev/null 2>&1 &
    KP=$!
    S=""
    for i in $(seq 100); do S=$(pgrep -u kuser -x kennel-stopped | head -1); [ -n "$S" ] && break; sleep 0.2; done
    if [ -z "$S" ]; then echo "NOT-STOPPED: $p"; kill -9 $KP; wait $KP; continue; fi
    # The other: the runner's child (whatever it runs by now, kennel-idmap
    # aside) when the runner stopped, else the runner.
    if [ $victim = stopped ]; then V=$S
    elif [ "$S" = "$KP" ]; then
      V=$(for c in $(pgrep -P $KP); do [ "$(cat /proc/$c/comm)" != kennel-idmap ] && echo $c; done | head -1)
    else V=$KP; fi
    [ -n "$V" ] && kill -9 $V || echo "NO-VICTIM: $p $victim"
    kill -CONT $KP 2>/dev/null
    for i in $(seq 40); do kill -0 $KP 2>/dev/null || break; sleep 0.25; done
    kill -0 $KP 2>/dev/null && { echo "RUNNER-HUNG: $p $victim"; kill -9 $KP; }
    wait $KP
    for i in $(seq 20); do [ "$(leftover)" = "$CLEAN" ] && break; sleep 0.5; done
    echo "KM $p $victim: $(leftover) $(systemctl --user show -p SubState kennel-km.scope 2>/dev/null)"
    # What one kill left must not spill into the next, or the next case.
    pkill -9 -u kuser -f 'sleep 1000[.]5'; pkill -9 -u kuser -x kennel-stopped
    systemctl --user stop kennel-km.scope 2>/dev/null; systemctl --user reset-failed 2>/dev/null
    rmdir "$APP/kennel-km.scope/kennel-km" "$APP/kennel-km.scope" 2>/dev/null
  done
done
kennel run --cgroup-manager systemd --name km --rootfs "$R" --memory 64M -- true; echo "REUSE-RC: $?"
''' + LEFTOVERS, 600),

    # clone3 answers ENOSYS (systemd's seccomp filter, as a profile that
    # predates clone3 would): the child cannot be born in its cgroup, so it
    # is moved there through cgroup.procs before it starts. One id, since
    # the filter implies no_new_privs and kennel-idmap's capabilities.
    "clone3_unavailable": ("kuser", ROOTFS + r'''
systemd-run --user --quiet --wait --pipe -p Delegate=yes -p SystemCallFilter=~clone3 \
  -p SystemCallErrorNumber=ENOSYS sh -c '
  kennel --verbose run --userns=single --rootfs "'"$R"'" --pids-limit 20 -- sh -c "
    echo INSIDE-CGROUP: \$(cat /proc/self/cgroup); echo PIDS-MAX: \$(cat /sys/fs/cgroup/pids.max)"
  echo "RC: $?"
' 2>&1
''' + LEFTOVERS, 120),

    "notify_unit_delegated": ("kuser", ROOTFS + r'''
mkdir -p ~/.config/systemd/user
cat > ~/.config/systemd/user/kt.service <<EOF
[Service]
Type=notify
Delegate=yes
ExecStart=/usr/local/bin/kennel --verbose run --name kt --rootfs $R --memory 64M -- sleep 60
EOF
systemctl --user daemon-reload
systemctl --user start kt
echo "ACTIVE: $(systemctl --user is-active kt)"
CG=$(systemctl --user show -p ControlGroup --value kt)
echo "UNIT-CGROUP: $CG"
kennel ps --format json | tr -d '\n '; echo
echo "KENNEL-LOG: $(journalctl --user -u kt --no-pager -o cat 2>/dev/null | grep -m1 'kennel: cgroup')"
systemctl --user stop kt
echo "AFTER-STOP: $(systemctl --user is-active kt)"
''' + LEFTOVERS, 150),

    "notify_container_mode": ("kuser", r'''
mkdir -p ~/.config/systemd/user
cat > ~/.config/systemd/user/kn.service <<EOF
[Service]
Type=notify
Delegate=yes
ExecStart=/usr/local/bin/kennel run --sdnotify container --no-home -- sh -c 'sleep 3; systemd-notify --ready --status=warm; sleep 60'
EOF
systemctl --user daemon-reload
systemctl --user start --no-block kn
sleep 1
echo "EARLY: $(systemctl --user is-active kn)"
for i in $(seq 60); do [ "$(systemctl --user is-active kn)" = active ] && break; sleep 0.25; done
echo "LATER: $(systemctl --user is-active kn)"
echo "STATUS: $(systemctl --user show -p StatusText --value kn)"
echo "MAINPID-IS-KENNEL: $(cat /proc/$(systemctl --user show -p MainPID --value kn)/comm)"
systemctl --user stop kn
''', 150),

    "root_system_scope": ("root", ROOTFS + r'''
kennel --verbose run --rootfs "$R" --memory 48M -- sh -c 'echo "MEMORY-MAX: $(cat /sys/fs/cgroup/memory.max)"'
echo "RC: $?"
echo "LEFT-SYSTEM-UNITS: $(systemctl list-units --all --no-legend 'kennel-*' | wc -l)"
echo "LEFT-CGROUPS: $(find /sys/fs/cgroup -name 'kennel-*' ! -name 'kennel-supervisor' -type d | wc -l)"
''', 120),

    "root_cgroupfs_rw": ("root", ROOTFS + r'''
kennel --verbose run --cgroup-manager cgroupfs --cgroup-rw --rootfs "$R" --pids-limit 40 -- sh -c '
  echo "PIDS-MAX: $(cat /sys/fs/cgroup/pids.max)"
  mkdir /sys/fs/cgroup/sub && echo CGROUP-WRITABLE'
echo "RC: $?"
echo "LEFT-CGROUPS: $(find /sys/fs/cgroup -name 'kennel-*' -type d | wc -l)"
''', 120),

    # linux.resources.devices as an eBPF device program on the container's
    # cgroup: kennel-oci spec's deny-all (podman's and containerd's) keeps
    # a node of linux.devices (c 1:11, /dev/kmsg, which anyone may open
    # for writing) from being opened, while the defaults (/dev/null) stay
    # open; a rule allowing it lets the same write through.
    "oci_root_device_rules": ("root", ROOTFS + r'''
B=$(mktemp -d); mv "$R" "$B/rootfs"; cd "$B"
kennel-oci spec
sed -i -e 's/"terminal": true/"terminal": false/' \
  -e 's/"sh"$/"sh", "-c", "echo kennel > \/dev\/mykmsg \&\& echo KMSG-WRITTEN; echo x > \/dev\/null \&\& echo NULL-WRITTEN"/' \
  -e 's/"linux": {/"linux": {"devices": [{"path": "\/dev\/mykmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 438}],/' config.json
kennel-oci run --bundle "$B" dr1 2>&1; echo "RC: $?"
sed -i 's/"access": "rwm"$/"access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"/' config.json
kennel-oci run --bundle "$B" dr2 2>&1 | sed 's/^/ALLOWED: /'
echo "LEFT-CGROUPS: $(find /sys/fs/cgroup -name 'kennel-*' ! -name 'kennel-supervisor' -type d | wc -l)"
''', 120),

    # kennel-oci's lifecycle on the cgroup it gets from the user manager:
    # limits from config.json, pause and resume through the freezer, update,
    # and a delete that leaves no cgroup or unit behind.
    "oci_lifecycle_with_cgroup": ("kuser", ROOTFS + r'''
B=$(mktemp -d); mv "$R" "$B/rootfs"; cd "$B"
kennel-oci spec --rootless
sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"sh"$/"sleep", "300"/' \
  -e 's/"linux": {/"linux": {"resources": {"memory": {"limit": 67108864}, "pids": {"limit": 50}},/' config.json
kennel-oci --systemd-cgroup create --bundle "$B" --pid-file "$B/pid" oc1; echo "CREATE-RC: $?"
kennel-oci state oc1 | grep -o '"status": "[a-z]*"' | sed 's/^/STATE-CREATED: /'
kennel-oci start oc1; echo "START-RC: $?"
CG=$(kennel ps --format json | tr -d ' \n' | grep -o '"cgroup":"[^"]*"' | head -1 | cut -d'"' -f4)
echo "CGROUP: $CG"
echo "MEMORY-MAX: $(cat "$CG/memory.max")"
echo "PIDS-MAX: $(cat "$CG/pids.max")"
echo "PID-IN-CGROUP: $(grep -c "^$(cat "$B/pid")$" "$CG/cgroup.procs")"
kennel-oci pause oc1; echo "PAUSE-RC: $?"
echo "FROZEN: $(grep frozen "$CG/cgroup.events")"
kennel-oci state oc1 | grep -o '"status": "[a-z]*"' | sed 's/^/STATE-PAUSED: /'
kennel-oci resume oc1; echo "RESUME-RC: $?"
kennel-oci state oc1 | grep -o '"status": "[a-z]*"' | sed 's/^/STATE-RESUMED: /'
kennel-oci update --memory 100663296 oc1; echo "UPDATE-RC: $?"
echo "MEMORY-MAX-UPDATED: $(cat "$CG/memory.max")"
kennel-oci delete oc1; echo "DELETE-RUNNING-RC: $?"
kennel-oci delete --force oc1; echo "DELETE-RC: $?"
echo "CGROUP-GONE: $([ -d "$CG" ] && echo no || echo yes)"
''' + LEFTOVERS, 120),

    # Rootless podman with its systemd cgroup manager and kennel-oci as the
    # runtime: podman's limits land in the container's cgroup, exit codes
    # come back, and nothing is left behind.
    "podman_systemd_kennel_oci": ("kuser", ROOTFS + r'''
P="podman --runtime /usr/local/bin/kennel-oci --cgroup-manager systemd --storage-driver vfs --events-backend file"
tar -C "$R" -c . | $P import - localhost/bb > /dev/null; echo "IMPORT-RC: $?"
echo "RUNTIME: $($P info --format '{{.Host.OCIRuntime.Path}}')"
$P run --rm --network none --memory 64m --pids-limit 50 localhost/bb sh -c '
  echo "MEMORY-MAX: $(cat /sys/fs/cgroup/memory.max)"
  echo "PIDS-MAX: $(cat /sys/fs/cgroup/pids.max)"
  echo "UID-MAP: $(cat /proc/self/uid_map | tr -s " " | head -1)"'
echo "RUN-RC: $?"
$P run --rm --network none localhost/bb sh -c 'exit 3'; echo "EXIT-CODE: $?"
echo "LEFT-CONTAINERS: $($P ps -a -q | wc -l)"
for i in $(seq 20); do
  [ -z "$(find /sys/fs/cgroup -name 'libpod-*' -type d 2>/dev/null)" ] && break; sleep 0.25
done
echo "LEFT-LIBPOD-CGROUPS: $(find /sys/fs/cgroup -name 'libpod-*' -type d 2>/dev/null | wc -l)"
''' + LEFTOVERS, 300),

    # podman run --sdnotify=container as a Type=notify user unit: the unit
    # is active once the container says READY=1 (through kennel-oci's
    # container, with the VM's systemd-notify copied into the image), and
    # never if it does not.
    "podman_sdnotify_container_unit": ("kuser", ROOTFS + r'''
for f in /usr/bin/systemd-notify $(ldd /usr/bin/systemd-notify | grep -o '/[^ ]*'); do
  cp --parents "$f" "$R"
done
P="/usr/bin/podman --runtime /usr/local/bin/kennel-oci --cgroup-manager systemd --storage-driver vfs --events-backend file"
tar -C "$R" -c . | $P import - localhost/bbn > /dev/null; echo "IMPORT-RC: $?"
systemd-run --user --quiet --unit kennel-sdn -p Type=notify -p NotifyAccess=all -p TimeoutStartSec=120 -- \
  $P run --rm --sdnotify=container --network none localhost/bbn sh -c 'sleep 1; systemd-notify --ready; sleep 300'
echo "READY-RC: $?"
echo "ACTIVE: $(systemctl --user show -p ActiveState --value kennel-sdn)"
systemctl --user stop kennel-sdn
systemd-run --user --quiet --unit kennel-sdn2 -p Type=notify -p NotifyAccess=all -p TimeoutStartSec=20 -- \
  $P run --rm --sdnotify=container --network none localhost/bbn sleep 300
echo "NOT-READY-RC: $?"
systemctl --user stop kennel-sdn2 2>/dev/null; systemctl --user reset-failed 2>/dev/null
# Stopping a unit stops podman and conmon, not the container, which sits
# in a scope of its own (as with crun): podman removes it, through
# kennel-oci's kill and delete.
$P rm -f -a > /dev/null
echo "LEFT-CONTAINERS: $($P ps -a -q | wc -l)"
''' + LEFTOVERS, 300),

    "doctor_on_systemd": ("kuser", r'''
kennel doctor; echo "RC: $?"
''', 60),

    # The container's cgroup leaf is opened by the runner: neither the
    # --init PID 1 nor a working directory may reach the host through it.
    "cgroup_fd_escape": ("kuser", ROOTFS + r'''
ESCAPE='for fd in /proc/1/fd/* /proc/self/fd/*; do for up in "" /.. /../.. /../../..; do
  touch "$fd$up/escaped" 2>/dev/null && echo "WROTE $fd$up"; done; done
echo "INIT-FDS: $(ls /proc/1/fd | tr "\n" " ")"'
kennel run --cgroup-manager systemd --pids-limit 50 --init --rootfs "$R" -- sh -c "$ESCAPE"
echo "RC: $?"
refused=0
for fd in $(seq 3 15); do
  kennel run --cgroup-manager systemd --pids-limit 50 -w /proc/self/fd/$fd --rootfs "$R" -- sh -c 'touch escaped; echo RAN' 2>/dev/null
  [ $? = 125 ] && refused=$((refused + 1))
done
echo "WORKDIR-REFUSED: $refused"
echo "ESCAPED-FILES: $(find / -xdev -name escaped 2>/dev/null | wc -l) $(find /sys/fs/cgroup -name escaped 2>/dev/null | wc -l)"
''' + LEFTOVERS, 120),

    "watchdog_and_ignore": ("kuser", ROOTFS + r'''
mkdir -p ~/.config/systemd/user
cat > ~/.config/systemd/user/kw.service <<EOF
[Service]
Type=notify
WatchdogSec=2
ExecStart=/usr/local/bin/kennel run --rootfs $R -- sleep 60
EOF
cat > ~/.config/systemd/user/ki.service <<EOF
[Service]
Type=notify
TimeoutStartSec=3
ExecStart=/usr/local/bin/kennel run --sdnotify ignore --init --rootfs $R -- sleep 60
EOF
systemctl --user daemon-reload
systemctl --user start kw
sleep 6
echo "WATCHDOG-ACTIVE: $(systemctl --user is-active kw)"
echo "WATCHDOG-RESULT: $(systemctl --user show -p Result --value kw)"
systemctl --user stop kw
systemctl --user start ki; echo "IGNORE-START-RC: $?"
echo "IGNORE-RESULT: $(systemctl --user show -p Result --value ki)"
systemctl --user reset-failed ki 2>/dev/null
''', 120),

    # .container files for kuser's user manager, made into units by
    # kennel-generator at daemon-reload: readiness from the container, the
    # limits in the container's leaf, each argument arriving as written, a
    # stop that ends even `sleep` (Init= is on by default) and leaves
    # nothing, Restart=on-failure, and a bad file that gets a message and
    # no unit.
    "container_file_units": ("kuser", ROOTFS + r'''
D=$(mktemp -d)
mkdir -p ~/.config/kennel
cat > ~/.config/kennel/kg-ready.container <<'END'
[Unit]
Description=generator test: ready when the container says so
[Container]
Notify=yes
Memory=48M
Pids=40
Environment=GREETING="hello $USER, 100%"
Exec=sh -c 'printf "<%s>\n" "$@" > /home/kuser/kg-args; echo "<$GREETING>" >> /home/kuser/kg-args; sleep 3; systemd-notify --ready; exec sleep 600.7' kg 'a b' '100%' '$HOME' '"q"' "it's" 'back\slash' ';' ''
END
cat > ~/.config/kennel/kg-restart.container <<END
[Container]
Rootfs=$R
Volume=$D:/data
Exec=sh -c 'if [ -e /data/ran-once ]; then exec sleep 600.9; fi; echo once > /data/ran-once; exit 3'
[Service]
Restart=on-failure
RestartSec=1
[Install]
WantedBy=default.target
END
printf '[Container]\nExec=true\nMemory=lots\n' > ~/.config/kennel/kg-bad.container
systemctl --user daemon-reload
echo "LOADSTATE: $(systemctl --user show -p LoadState --value kg-ready) $(systemctl --user show -p LoadState --value kg-restart) $(systemctl --user show -p LoadState --value kg-bad)"
echo "SOURCEPATH: $(systemctl --user show -p SourcePath --value kg-ready)"
echo "WANTS-LINK: $(readlink "$XDG_RUNTIME_DIR/systemd/generator/default.target.wants/kg-restart.service")"
BAD=""
for i in $(seq 20); do
  BAD=$(journalctl --user --no-pager -o cat 2>&1 | grep -m1 'kg-bad.container') && break; sleep 0.5
done
echo "BAD-JOURNAL: $BAD"

systemctl --user start --no-block kg-ready
sleep 1
echo "EARLY: $(systemctl --user is-active kg-ready)"
for i in $(seq 120); do [ "$(systemctl --user is-active kg-ready)" = active ] && break; sleep 0.25; done
echo "LATER: $(systemctl --user is-active kg-ready)"
CG=/sys/fs/cgroup$(systemctl --user show -p ControlGroup --value kg-ready)
echo "LEAF-MEMORY-MAX: $(cat "$CG/kennel-kg-ready/memory.max")"
echo "LEAF-PIDS-MAX: $(cat "$CG/kennel-kg-ready/pids.max")"
echo "SLEEPER-IN-LEAF: $(for p in $(cat "$CG/kennel-kg-ready/cgroup.procs"); do tr '\0' ' ' < /proc/$p/cmdline; echo; done | grep -cx 'sleep 600[.]7 ')"
sed 's/^/ARG: /' ~/kg-args
systemctl --user stop kg-ready
echo "STOPPED: $(systemctl --user is-active kg-ready)"
echo "STOP-RESULT: $(systemctl --user show -p Result --value kg-ready) $(systemctl --user show -p ExecMainStatus --value kg-ready)"
echo "STOP-PROCS: $(pgrep -u kuser -f 'sleep 600[.]7' | wc -l)"
for i in $(seq 20); do [ -d "$CG" ] || break; sleep 0.25; done
echo "STOP-CGROUP: $([ -d "$CG" ] && echo present || echo gone)"
echo "STOP-LISTED: $(kennel ps | grep -c '^kg-ready ')"

systemctl --user start --no-block kg-restart
for i in $(seq 160); do
  [ "$(systemctl --user show -p NRestarts --value kg-restart)" -ge 1 ] && [ "$(systemctl --user is-active kg-restart)" = active ] && break
  sleep 0.25
done
echo "RESTARTS: $(systemctl --user show -p NRestarts --value kg-restart)"
echo "RESTARTED-ACTIVE: $(systemctl --user is-active kg-restart)"
echo "RAN-ONCE: $(cat "$D/ran-once")"
echo "SECOND-RUN: $(pgrep -u kuser -xf 'sleep 600[.]9' | wc -l)"
systemctl --user stop kg-restart
echo "RESTART-STOPPED: $(systemctl --user is-active kg-restart)"
echo "RESTART-STOP-PROCS: $(pgrep -u kuser -f 'sleep 600[.]9' | wc -l)"
rm -rf ~/.config/kennel ~/kg-args
systemctl --user daemon-reload
''' + LEFTOVERS, 240),

    # `kennel box create --unit`: the unit it writes, started and stopped
    # by kuser's user manager, is the box `enter` joins; rm removes it.
    # The busybox rootfs is the image (what create's set-up needs added).
    "box_user_unit": ("kuser", ROOTFS + r'''
for a in sed mkdir chown chmod rm; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:' > "$R/etc/group"
kennel box create vb --image "$R" --unit > /dev/null; echo "CREATE-RC: $?"
U=~/.config/systemd/user/kennel-box-vb.service
systemd-analyze --user verify "$U"; echo "VERIFY-RC: $?"
systemctl --user daemon-reload
systemctl --user start kennel-box-vb; echo "START-RC: $?"
echo "ACTIVE: $(systemctl --user is-active kennel-box-vb)"
echo "ENTER: $(kennel box enter vb -- cat /proc/sys/kernel/hostname)"
echo "ENTER-WARNED: $(kennel box enter vb -- true 2>&1 | grep -c 'outside the container')"
echo "ENTER-CGROUP: $(kennel box enter vb -- cat /proc/self/cgroup)"
echo "LISTED: $(kennel box list | awk '$1 == "vb" {print $2}')"
systemctl --user stop kennel-box-vb
echo "STOPPED: $(systemctl --user is-active kennel-box-vb)"
echo "STOP-RESULT: $(systemctl --user show -p Result --value kennel-box-vb)"
echo "STOP-PS: $(kennel ps | grep -c '^box[.]vb ')"
kennel box rm vb > /dev/null; echo "RM-RC: $?"
echo "UNIT-FILE: $([ -e "$U" ] && echo present || echo gone)"
systemctl --user daemon-reload
''' + LEFTOVERS, 120),

    # The same generator for the system manager, from /etc/kennel.
    "container_file_system_unit": ("root", ROOTFS + r'''
mkdir -p /etc/kennel
cat > /etc/kennel/kg-sys.container <<END
[Container]
Rootfs=$R
Pids=30
Exec=sleep 600.5
END
systemctl daemon-reload
systemctl start kg-sys; echo "SYS-START-RC: $?"
echo "SYS-ACTIVE: $(systemctl is-active kg-sys)"
CG=/sys/fs/cgroup$(systemctl show -p ControlGroup --value kg-sys)
echo "SYS-PIDS-MAX: $(cat "$CG/kennel-kg-sys/pids.max")"
systemctl stop kg-sys
echo "SYS-STOPPED: $(systemctl is-active kg-sys)"
echo "SYS-STOP-RESULT: $(systemctl show -p Result --value kg-sys) $(systemctl show -p ExecMainStatus --value kg-sys)"
echo "SYS-STOP-PROCS: $(pgrep -f 'sleep 600[.]5' | wc -l)"
for i in $(seq 20); do [ -d "$CG" ] || break; sleep 0.25; done
echo "SYS-STOP-CGROUP: $([ -d "$CG" ] && echo present || echo gone)"
rm -rf /etc/kennel
systemctl daemon-reload
''', 120),
}
