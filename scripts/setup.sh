#!/usr/bin/env bash
# osrewind host setup: everything a Debian/Ubuntu machine needs to record, idempotent.
#
#   sudo scripts/setup.sh          # packages, kernel headers links, tracefs, the venv in .venv
#   sudo scripts/setup.sh --dev    # the same, plus vagrant (for the Vagrantfile test) and bpftool
#
# - BCC comes from the distribution (python3-bpfcc, bpfcc-tools): the PyPI package named "bcc" is
#   unrelated. The venv reaches Debian's bcc module through a .pth file that exposes only `bcc`,
#   not the rest of the system's site-packages.
# - BCC looks for /lib/modules/$(uname -r)/build and .../source. A kernel without its own headers
#   package (a cloud or VM kernel) gets both linked to the newest installed Debian headers; only
#   tracepoint arguments and BPF helpers are used by osrewind's probes, so their layout suffices.
# - tracefs and debugfs are mounted when they are not.
# Environment: OSREWIND_VENV (default: <repo>/.venv).
set -euo pipefail

say() { echo "osrewind-setup: $*"; }
die() { echo "osrewind-setup: error: $*" >&2; exit 1; }

DEV=0
for arg in "$@"; do
    case "$arg" in
        --dev) DEV=1 ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0): it installs packages and mounts tracefs"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OSREWIND_VENV:-$REPO/.venv}"
RELEASE="$(uname -r)"
ARCH="$(dpkg --print-architecture)"

# ---------------------------------------------------------------- packages
. /etc/os-release
PKGS=(bpfcc-tools python3-bpfcc python3-venv python3-pip make gcc util-linux)
if [ "${ID:-}" = "ubuntu" ]; then
    HEADERS=(linux-headers-"$RELEASE")
else
    HEADERS=(linux-headers-"$ARCH")
fi
[ "$DEV" -eq 1 ] && PKGS+=(vagrant)
# bpftool: the tests check which hooks a probe attaches and that closing it detaches them
[ "$DEV" -eq 1 ] && apt-cache show bpftool >/dev/null 2>&1 && PKGS+=(bpftool)

missing=()
for p in "${PKGS[@]}" "${HEADERS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    if ! apt-get install -y -qq --no-install-recommends "${PKGS[@]}" "${HEADERS[@]}" >/dev/null; then
        if [ "${ID:-}" = "ubuntu" ]; then  # a kernel with no matching headers package
            apt-get install -y -qq --no-install-recommends "${PKGS[@]}" linux-headers-generic >/dev/null
        else
            die "apt-get install failed for: ${missing[*]}"
        fi
    fi
fi

# ---------------------------------------------------------------- kernel headers for BCC
MODDIR="/lib/modules/$RELEASE"
newest() { ls -d $1 2>/dev/null | sort -V | tail -n 1; }
if [ ! -e "$MODDIR/build" ] || [ ! -e "$MODDIR/source" ]; then
    BUILD="$(newest "/usr/src/linux-headers-*-$ARCH")"
    [ -n "$BUILD" ] || BUILD="$(newest "/usr/src/linux-headers-*-generic")"
    [ -n "$BUILD" ] || die "no kernel headers found under /usr/src after installing them"
    COMMON="$(newest "/usr/src/linux-headers-*-common")"
    [ -n "$COMMON" ] || COMMON="$BUILD"   # Ubuntu: one directory holds both
    mkdir -p "$MODDIR"
    [ -e "$MODDIR/build" ] || ln -sfn "$BUILD" "$MODDIR/build"
    [ -e "$MODDIR/source" ] || ln -sfn "$COMMON" "$MODDIR/source"
    say "linked $MODDIR/build -> $BUILD, source -> $COMMON"
fi

# ---------------------------------------------------------------- tracefs / debugfs
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing \
    || die "cannot mount tracefs at /sys/kernel/tracing"
mountpoint -q /sys/kernel/debug || mount -t debugfs nodev /sys/kernel/debug || true

# ---------------------------------------------------------------- venv
PY="$(command -v python3)" || die "python3 not found"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 >= 3.10 needed ($PY)"
if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    "$PY" -m venv "$VENV"
fi
stamp="$VENV/.osrewind-installed"
if [ ! -f "$stamp" ] || [ "$REPO/pyproject.toml" -nt "$stamp" ]; then
    say "installing osrewind and its Python dependencies into $VENV"
    log="$VENV/pip-install.log"
    { "$VENV/bin/python" -m pip install -q --upgrade pip \
        && "$VENV/bin/python" -m pip install -q -e "$REPO[dev]"; } >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "pip install failed (full log: $log)"; }
    touch "$stamp"
fi

# Debian's bcc module, and nothing else from the system site-packages
BCC_DIR="$(/usr/bin/python3 -c 'import bcc, os; print(os.path.dirname(bcc.__file__))' 2>/dev/null || true)"
[ -n "$BCC_DIR" ] || BCC_DIR="$(ls -d /usr/lib/python3/dist-packages/bcc 2>/dev/null || true)"
[ -n "$BCC_DIR" ] || die "Debian's bcc module not found (python3-bpfcc)"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p "$SITE/_osrewind_debian"
ln -sfn "$BCC_DIR" "$SITE/_osrewind_debian/bcc"
echo "$SITE/_osrewind_debian" > "$SITE/osrewind-debian-bcc.pth"
"$VENV/bin/python" -c 'import bcc' || die "bcc is not importable from $VENV"

say "ready: BCC $(dpkg-query -W -f='${Version}' python3-bpfcc), headers $(readlink -f "$MODDIR/build"), venv $VENV"
