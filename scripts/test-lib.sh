# Sourced by scripts/deb-test.sh and scripts/artifacts-test.sh: their PASS/FAIL lines
# (failures counted in $fails), the newest modification time under some paths (for
# "rebuild when older than its sources"), and a free port on 127.0.0.1.
fails=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# Newest modification time (epoch seconds) under the given paths.
newest() { find "$@" -type f -printf '%T@\n' | sort -n | tail -1 | cut -d. -f1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
