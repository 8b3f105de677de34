#!/usr/bin/env bash
# Runs the keychain test (tests/keychain.rs) against a real Secret Service: a private
# session bus (dbus-run-session) with gnome-keyring-daemon, its keyrings in a temporary
# folder, unlocked with a throwaway password. Extra arguments go to `cargo test`.
# Needs the Debian packages dbus, dbus-x11, gnome-keyring (xtask installs them).
set -euo pipefail

if [ -z "${HZ_KEYCHAIN_SESSION:-}" ]; then
    export HZ_KEYCHAIN_SESSION=1
    exec dbus-run-session -- bash "$0" "$@"
fi

tmp=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
# gnome-keyring keeps its keyrings under $XDG_DATA_HOME/keyrings: never the user's own.
export XDG_DATA_HOME="$tmp/data" XDG_RUNTIME_DIR="$tmp/run"
mkdir -p "$XDG_DATA_HOME" "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"

# The password must not be empty: with an empty one no login collection is created.
printf '%s' "hz-keychain-test" | gnome-keyring-daemon --foreground --unlock --components=secrets \
    >"$tmp/daemon.log" 2>&1 &
daemon=$!

for _ in $(seq 100); do
    if dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q "boolean true"; then
        break
    fi
    sleep 0.1
done

# --workspace: the same feature set as `cargo test --workspace`, so CI reuses its build.
HZ_KEYCHAIN_REQUIRED=1 cargo test --workspace --test keychain "$@" || {
    status=$?
    echo "--- gnome-keyring-daemon log:" >&2
    cat "$tmp/daemon.log" >&2
    exit "$status"
}
