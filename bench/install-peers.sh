#!/bin/sh
# Install what `make bench` compares with, when it is missing: the peer
# allocators mimalloc, jemalloc, tcmalloc, and gnuplot for the plot.
# `install-peers.sh valgrind` also installs valgrind (for make bench-ir).
# Never fails: whatever cannot be installed is skipped later, with a note.

missing=""
have_lib() {
    [ -e "/lib/x86_64-linux-gnu/$1" ] || [ -e "/usr/lib/x86_64-linux-gnu/$1" ]
}
have_lib libmimalloc.so.2 || missing="$missing libmimalloc2.0"
have_lib libjemalloc.so.2 || missing="$missing libjemalloc2"
have_lib libtcmalloc_minimal.so.4 || missing="$missing libtcmalloc-minimal4"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "bench: not root and no sudo, not installing:$missing" >&2
    exit 0
fi

echo "bench: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # $missing is a list of package names
$sudo apt-get install -y -q $missing >/dev/null 2>&1 && exit 0
$sudo apt-get update -q >/dev/null 2>&1
for pkg in $missing; do
    $sudo apt-get install -y -q "$pkg" >/dev/null 2>&1 ||
        echo "bench: could not install $pkg: skipped" >&2
done
exit 0
