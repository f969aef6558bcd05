#!/usr/bin/env bash
# weir developer entry point.
#
#   tools/dev.sh deps               install the Debian 12 packages that are missing
#   tools/dev.sh build [--sanitize|--release|--fuzz]
#                                   meson + ninja into build/ (build-asan/, build-release/,
#                                   build-fuzz/)
#   tools/dev.sh run                deps, build, demo backends on :9001/:9002, weir on :8080
#   tools/dev.sh test               deps, build, whole suite, again under ASan+UBSan,
#                                   the fuzz targets briefly, the valgrind subset;
#                                   ends with one line "N passed, N failed"
#   tools/dev.sh fuzz [SECONDS [TARGET...]]
#                                   deps, clang fuzz build (build-fuzz/), each target
#                                   fuzzed SECONDS (default 600)
#   tools/dev.sh valgrind [--all] [-- PYTEST-ARGS]
#                                   deps, build, integration tests under memcheck
#   tools/dev.sh bench [ARGS...]    deps, release build, tools/bench ARGS
#   tools/dev.sh testssl [OUT_DIR]  deps, build, testssl.sh against a default HTTPS
#                                   listener (tools/testssl-weir); fails on findings
#   tools/dev.sh deb [OUT_DIR]      a Debian package (dpkg-deb) of a release build
#                                   with prefix /usr: OUT_DIR/weir_<version>_<arch>.deb
#                                   (default build-deb/); no deps step, no install
#
# Never prompts. Works as root, or through sudo when not root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian's python3, with python3-h2 and python3-pytest; a pyenv python3 on PATH
# does not see Debian's packages.
PY=/usr/bin/python3

PACKAGES=(
    build-essential meson ninja-build pkg-config
    liburing-dev node-llhttp libnghttp2-dev libssl-dev libyaml-dev libpcre2-dev check
    curl nghttp2-client python3 python3-h2 python3-pytest openssl wrk nginx haproxy procps
    iproute2 util-linux clang-14 libclang-rt-14-dev llvm-14 valgrind python3-websockets python3-grpcio python3-hyperframe python3-hpack
    testssl.sh python3-prometheus-client
    dpkg-dev systemd strace groff-base
)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'dev.sh: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n env DEBIAN_FRONTEND=noninteractive "$@" \
            || die "sudo failed; run as root or allow passwordless sudo for apt-get"
    else
        die "not root and no sudo: install these as root: $*"
    fi
}

cmd_deps() {
    local missing=() p status
    for p in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ "$status" = installed ] || missing+=("$p")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # One update per install: the package lists may be absent or stale on a fresh machine.
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# build_dir DIR [meson setup args...]: configure once (again when the setup
# arguments changed), then let ninja reconfigure.
build_dir() {
    local dir="$1"; shift
    local stamp="$dir/.weir-setup-args" args="$*"
    if [ -f "$dir/build.ninja" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$args" ]; then
        say "setup arguments of $dir changed: configuring it afresh"
        rm -rf "$dir"
    fi
    if [ ! -f "$dir/build.ninja" ]; then
        say "meson setup $dir $*"
        meson setup "$dir" "$@"
        printf '%s' "$args" > "$stamp"
    fi
    say "ninja -C $dir"
    ninja -C "$dir"
}

cmd_build() {
    case "${1:-}" in
        "") build_dir build ;;
        --sanitize)
            # b_lundef=false: modules are dlopen'ed and resolve ASan symbols from the binary.
            # -fno-sanitize-recover: UBSan stops at its first error, as ASan does.
            build_dir build-asan -Db_sanitize=address,undefined -Db_lundef=false \
                -Dc_args=-fno-sanitize-recover=all ;;
        --release)
            # The benchmark needs only the binary and the modules.
            build_dir build-release --buildtype=release -Dtests=false ;;
        --fuzz)
            # libFuzzer targets (t/fuzz): clang, everything instrumented.
            CC=clang-14 build_dir build-fuzz -Dfuzz=true -Dtests=false \
                -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized ;;
        *) die "build: unknown option '$1' (use --sanitize, --release or --fuzz)" ;;
    esac
}

# wait_port PORT SECONDS: true once something accepts on 127.0.0.1:PORT
# (SECONDS 0: check once).
wait_port() {
    local port="$1" tries=$(( $2 * 10 ))
    while :; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
        tries=$((tries - 1))
    done
}

# modules_dir BUILD: the directory to pass to -M. meson builds each module in
# BUILD/modules/<name>/<name>.so; if the loader does not find them there as
# BUILD/modules/<name>.so, link them flat into BUILD/modules-flat.
modules_dir() {
    local build="$1" so
    if ls "$build"/modules/*.so >/dev/null 2>&1 || ! ls "$build"/modules/*/*.so >/dev/null 2>&1; then
        echo "$build/modules"
        return
    fi
    rm -rf "$build/modules-flat"
    mkdir -p "$build/modules-flat"
    for so in "$build"/modules/*/*.so; do
        ln -s "$so" "$build/modules-flat/$(basename "$so")"
    done
    echo "$build/modules-flat"
}

cmd_run() {
    cmd_deps
    cmd_build
    local conf="${WEIR_CONF:-$ROOT/etc/weir.yaml}" port="${WEIR_PORT:-8080}"
    local pids=()
    cleanup() {
        local p
        for p in "${pids[@]}"; do
            kill "$p" 2>/dev/null || true
        done
        wait 2>/dev/null || true
    }
    trap cleanup EXIT

    local bport
    for bport in "$port" 9001 9002; do
        if wait_port "$bport" 0; then
            die "port $bport is already in use; stop whatever listens there first"
        fi
    done
    for bport in 9001 9002; do
        "$PY" "$ROOT/tools/demo_backend.py" "$bport" &
        pids+=("$!")
    done
    for bport in 9001 9002; do
        wait_port "$bport" 5 || die "demo backend on port $bport did not start"
    done

    local mods
    mods="$(modules_dir "$ROOT/build")"
    say "build/core/weir -c $conf -M ${mods#"$ROOT"/}"
    "$ROOT/build/core/weir" -c "$conf" -M "$mods" -p "$ROOT/build/weir.pid" &
    local weir_pid=$! rc=0
    # weir runs as a background job of this script, where SIGINT starts out ignored:
    # turn Ctrl-C and TERM into TERM (fast stop) for weir, then clean up the backends
    # once it has exited.
    trap 'kill -TERM "$weir_pid" 2>/dev/null || true' INT TERM

    local tries=300
    while [ "$tries" -gt 0 ] && kill -0 "$weir_pid" 2>/dev/null; do
        if wait_port "$port" 0; then
            printf '\nweir is running: try curl http://127.0.0.1:%s/\n\n' "$port"
            break
        fi
        sleep 0.1
        tries=$((tries - 1))
    done
    while :; do
        wait "$weir_pid" && rc=0 || rc=$?
        kill -0 "$weir_pid" 2>/dev/null || break
    done
    [ "$rc" -eq 0 ] || say "weir exited with status $rc"
    exit "$rc"
}

# Seconds each fuzz target runs in `test` (the long runs: `fuzz`).
FUZZ_CI_SECONDS="${FUZZ_CI_SECONDS:-10}"

cmd_test() {
    cmd_deps
    local rc=0 t
    mkdir -p "$ROOT/build"
    local results="$ROOT/build/ci-results.txt" vglog="$ROOT/build/ci-valgrind.txt"
    : > "$results"
    : > "$vglog"
    # a build that fails counts as a failed test, and the steps after it still run
    built() { if "$@"; then return 0; fi; echo "FAIL build:$*" >> "$results"; rc=1; return 1; }

    built cmd_build
    say "meson test -C build"
    meson test -C build --print-errorlogs || rc=1

    built cmd_build --sanitize
    say "meson test -C build-asan (ASan+UBSan, leak checks on)"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        meson test -C build-asan --print-errorlogs --timeout-multiplier 3 || rc=1

    built cmd_build --fuzz
    say "fuzz targets: every corpus and regression input, then ${FUZZ_CI_SECONDS}s of fuzzing each"
    meson test -C build-fuzz --suite fuzz --print-errorlogs || rc=1
    for t in $(cd t/fuzz && ls ./*_fuzz.c | sed 's|^\./||; s|_fuzz\.c$||'); do
        if t/fuzz/run.sh build-fuzz "$FUZZ_CI_SECONDS" "$t"; then
            echo "PASS fuzz-$t" >> "$results"
        else
            echo "FAIL fuzz-$t" >> "$results"
            rc=1
        fi
    done

    say "integration tests under valgrind (the CI subset, tools/valgrind-suite)"
    if "$PY" tools/valgrind-suite --build-dir build --no-build 2>&1 | tee "$vglog"; then
        echo "PASS valgrind-memcheck" >> "$results"
    else
        echo "FAIL valgrind-memcheck" >> "$results"
        rc=1
    fi

    if [ "$rc" -ne 0 ]; then
        say "tests FAILED (see the logs above, and build*/meson-logs/testlog.txt)"
    else
        say "all tests passed (plain, ASan+UBSan, fuzz, valgrind)"
    fi
    "$PY" tools/test_summary.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
        build-fuzz/meson-logs/testlog.json --output "$vglog" --results "$results"
    return "$rc"
}

cmd_fuzz() {
    cmd_deps
    cmd_build --fuzz
    local seconds="${1:-600}"
    [ $# -eq 0 ] || shift
    exec t/fuzz/run.sh build-fuzz "$seconds" "$@"
}

cmd_valgrind() {
    cmd_deps
    cmd_build
    exec "$PY" tools/valgrind-suite --build-dir build --no-build "$@"
}

cmd_bench() {
    cmd_deps
    cmd_build --release
    exec "$PY" "$ROOT/tools/bench" --weir "$ROOT/build-release/core/weir" \
        --modules "$(modules_dir "$ROOT/build-release")" "$@"
}

# deb [OUT_DIR]: a Debian package of this tree, built with dpkg-deb from
# what `meson install` puts under /usr and /etc (configured in
# OUT_DIR/build: release, --prefix=/usr, Debian's hardening build flags, the
# unit in /lib/systemd/system as bookworm's packages have it). The tree is
# OUT_DIR/pkg/debian/weir, as debhelper would lay it out, so dpkg-shlibdeps
# computes Depends from the libraries the binary and modules link. The
# maintainer scripts create the weir user the unit runs as and tell systemd
# about the unit; they do not enable or start it (the default config proxies
# to demo backends). Writes OUT_DIR/weir_<version>_<arch>.deb.
cmd_deb() {
    local out="${1:-build-deb}"
    mkdir -p "$out"
    out="$(cd "$out" && pwd)"
    local build="$out/build" pkg="$out/pkg" root="$out/pkg/debian/weir"
    CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
    LDFLAGS="$(dpkg-buildflags --get LDFLAGS)" \
        build_dir "$build" --prefix=/usr --sysconfdir=/etc --localstatedir=/var \
            --buildtype=release -Dtests=false -Dsystemdunitdir=/lib/systemd/system
    rm -rf "$pkg"
    mkdir -p "$root/DEBIAN"
    say "meson install --destdir $root"
    meson install -C "$build" --destdir "$root" --no-rebuild --strip --quiet
    # the source tree's config keeps its pid file beside it for the demo; an
    # installed one uses the unit's (so a plain `weir -s reload` finds it)
    sed -i 's|^pid_file: weir.pid$|pid_file: /run/weir/weir.pid|' "$root/etc/weir/weir.yaml"
    grep -q '^pid_file: /run/weir/weir.pid' "$root/etc/weir/weir.yaml" \
        || die "the packaged weir.yaml names no /run/weir pid file"

    local version arch doc="$root/usr/share/doc/weir"
    version="$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["version"])' \
        < "$build/meson-info/intro-projectinfo.json")"
    arch="$(dpkg --print-architecture)"
    gzip -9n "$root/usr/share/man/man8/weir.8"
    # Debian's form of the licence: debian/copyright in the doc directory
    { printf 'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n'
      printf 'Upstream-Name: weir\n\nFiles: *\nCopyright: 2026 weir authors\n'
      printf 'License: BSD-2-Clause\n'
      sed -n '/^Redistribution/,$p' "$doc/LICENSE" | sed 's/^$/./; s/^/ /'
    } > "$doc/copyright"
    rm "$doc/LICENSE"

    printf 'Source: weir\n\nPackage: weir\nArchitecture: any\n' > "$pkg/debian/control"
    local depends so shlibs=()
    shlibs=(-e"$root/usr/bin/weir")
    for so in "$root"/usr/lib/*/weir/modules/*.so; do shlibs+=(-e"$so"); done
    depends="$(cd "$pkg" && dpkg-shlibdeps -O "${shlibs[@]}")"
    depends="${depends#shlibs:Depends=}, systemd | adduser"

    printf '/etc/weir/weir.yaml\n/etc/logrotate.d/weir\n' > "$root/DEBIAN/conffiles"
    cat > "$root/DEBIAN/control" <<CONTROL
Package: weir
Version: $version
Architecture: $arch
Maintainer: weir authors <weir@invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: $depends
Section: httpd
Priority: optional
Description: reverse proxy and load balancer with loadable modules
 weir proxies HTTP/1.1 and HTTP/2 (h2, h2c, gRPC) on an io_uring event loop.
 Routing, load balancing, header rules, rewrites, access logs, health checks,
 the PROXY protocol and TLS are modules loaded from a YAML configuration.
 Includes the systemd unit (Type=notify, sandboxed), the module headers and
 weir-module.pc for building modules out of tree.
CONTROL
    cat > "$root/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers weir.conf
    elif ! getent passwd weir >/dev/null; then
        adduser --system --group --no-create-home --home /nonexistent weir
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
SCRIPT
    cat > "$root/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop weir.service >/dev/null 2>&1 || true
fi
SCRIPT
    cat > "$root/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
SCRIPT
    chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
    local deb="$out/weir_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    say "built $deb"
    echo "$deb"
}

cmd_testssl() {
    cmd_deps
    cmd_build
    exec "$ROOT/tools/testssl-weir" "$ROOT/build" "$@"
}

usage() {
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'
}

[ $# -ge 1 ] || { usage >&2; exit 2; }
sub="$1"; shift
case "$sub" in
    deps)  cmd_deps "$@" ;;
    build) cmd_build "$@" ;;
    run)   cmd_run "$@" ;;
    test)  cmd_test "$@" ;;
    fuzz)  cmd_fuzz "$@" ;;
    valgrind) cmd_valgrind "$@" ;;
    bench) cmd_bench "$@" ;;
    testssl) cmd_testssl "$@" ;;
    deb)   cmd_deb "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
esac
