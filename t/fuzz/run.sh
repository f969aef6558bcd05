#!/bin/sh
# Runs weir's libFuzzer targets (t/fuzz/*_fuzz.c, built with -Dfuzz=true).
#
#   t/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]   fuzz each target for SECONDS
#   t/fuzz/run.sh --regress BUILD_DIR [TARGET...] run every input of
#                              t/fuzz/corpus/<target> and t/fuzz/regress/<target>
#                              once, no fuzzing (CI)
#
# Targets run one after the other, under `nice -n 10` (FUZZ_NICE=0 to turn it
# off), with no argument meaning every target that is built. FUZZ_ARGS adds
# libFuzzer flags to fuzzing runs (e.g. "-fork=1 -ignore_crashes=1" to go on
# past a known crash). Fuzzing works in
# BUILD_DIR only: the repository's corpus seeds BUILD_DIR/fuzz-corpus/<target>
# (copied, never written), findings go to BUILD_DIR/fuzz-crashes/<target>/,
# logs to BUILD_DIR/fuzz-logs/<target>.log, scratch files to
# BUILD_DIR/fuzz-work/<target>/. One summary line per target; the exit status
# is non-zero if any target crashed, leaked, hung or ran out of memory.
#
# Build first:
#   CC=clang-14 meson setup build-fuzz -Dfuzz=true -Dtests=false \
#     -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized
#   ninja -C build-fuzz
set -u

usage() {
    echo "usage: $0 BUILD_DIR SECONDS [TARGET...]" >&2
    echo "       $0 --regress BUILD_DIR [TARGET...]" >&2
    exit 2
}

mode=fuzz
if [ "${1:-}" = "--regress" ]; then
    mode=regress
    shift
fi
[ $# -ge 1 ] || usage
build=$1
shift
seconds=0
if [ "$mode" = fuzz ]; then
    [ $# -ge 1 ] || usage
    seconds=$1
    shift
    case $seconds in
    '' | *[!0-9]*) echo "$0: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
    esac
fi

here=$(cd "$(dirname "$0")" && pwd)
if [ ! -d "$build" ]; then
    echo "$0: no build directory $build; configure it with" >&2
    echo "  CC=clang-14 meson setup $build -Dfuzz=true -Dtests=false -Db_sanitize=address,undefined -Db_lundef=false --buildtype=debugoptimized" >&2
    exit 2
fi
build=$(cd "$build" && pwd)
bindir=$build/t/fuzz

# every target with a source, in a fixed order
all_targets() {
    for f in "$here"/*_fuzz.c; do
        [ -e "$f" ] || continue
        n=$(basename "$f" _fuzz.c)
        echo "$n"
    done
}

if [ $# -eq 0 ]; then
    targets=
    for t in $(all_targets); do
        [ -x "$bindir/${t}_fuzz" ] && targets="$targets $t"
    done
    if [ -z "$targets" ]; then
        echo "$0: no fuzz targets built in $bindir (configure with -Dfuzz=true, then ninja -C $build)" >&2
        exit 2
    fi
else
    targets=$*
fi

# Longest input per target: past the limits each target tests (a request line
# of 8 KiB for 414) without making every input huge.
max_len() {
    case $1 in
    request_head | response) echo 10000 ;;
    h2) echo 16384 ;;
    config) echo 8192 ;;
    body | router) echo 4096 ;;
    template) echo 2048 ;;
    *) echo 8192 ;;
    esac
}

nice_cmd=
if [ "${FUZZ_NICE:-10}" != 0 ] && command -v nice >/dev/null 2>&1; then
    nice_cmd="nice -n ${FUZZ_NICE:-10}"
fi
# symbolised stacks: ASan looks for llvm-symbolizer on PATH, Debian names it
# after the version
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && ! command -v llvm-symbolizer >/dev/null 2>&1; then
    for s in /usr/lib/llvm-14/bin/llvm-symbolizer /usr/bin/llvm-symbolizer-14 \
             /usr/lib/llvm-*/bin/llvm-symbolizer; do
        if [ -x "$s" ]; then
            ASAN_SYMBOLIZER_PATH=$s
            export ASAN_SYMBOLIZER_PATH
            break
        fi
    done
fi
# the caller's options first, so ours (leak detection above all) win
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:symbolize=1:handle_abort=1"
UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS UBSAN_OPTIONS
WEIR_FUZZ_MODULES=${WEIR_FUZZ_MODULES:-$build/modules}
export WEIR_FUZZ_MODULES

failed=0
mkdir -p "$build/fuzz-logs" || exit 2

for t in $targets; do
    bin=$bindir/${t}_fuzz
    if [ ! -x "$bin" ]; then
        echo "$t: not built ($bin missing)"
        failed=1
        continue
    fi
    work=$build/fuzz-work/$t
    crashes=$build/fuzz-crashes/$t
    log=$build/fuzz-logs/$t.log
    # scratch files of an earlier run (a fork-mode child or a crash leaves
    # its temp directory behind)
    rm -rf "$work/tmp"
    mkdir -p "$work/tmp" "$crashes" || exit 2
    dict=
    [ -f "$here/dict/$t.dict" ] && dict="-dict=$here/dict/$t.dict"
    len=$(max_len "$t")

    if [ "$mode" = regress ]; then
        # every input once; a file argument is run, never written
        files=$(for d in "$here/corpus/$t" "$here/regress/$t"; do
                    [ -d "$d" ] && find "$d" -type f ! -name '.*' ! -name README
                done | sort)
        if [ -z "$files" ]; then
            echo "$t: no inputs"
            continue
        fi
        count=$(echo "$files" | wc -l)
        # shellcheck disable=SC2086 # word splitting of the file list is wanted
        (cd "$work" && TMPDIR=$work/tmp $nice_cmd "$bin" -timeout=10 -rss_limit_mb=2048 \
            -max_len="$len" -artifact_prefix="$crashes/" $files) >"$log" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then
            echo "$t: regress ok, $count inputs"
        else
            failed=1
            echo "$t: regress FAILED (exit $rc), $count inputs; see $log"
            grep -E '^(==[0-9]+==ERROR|SUMMARY|.*fuzz invariant failed|Running: )' "$log" |
                grep -B1 -E 'ERROR|SUMMARY|invariant' | head -n 6 | sed 's/^/    /'
        fi
        continue
    fi

    corpus=$build/fuzz-corpus/$t
    mkdir -p "$corpus" || exit 2
    if [ -d "$here/corpus/$t" ]; then
        # seeds are copied afresh (what the fuzzer added stays: the scratch
        # corpus grows across runs); the fuzzer only ever writes into $corpus
        find "$here/corpus/$t" -type f ! -name '.*' -exec cp {} "$corpus/" \; 2>/dev/null
    fi
    before=$(find "$crashes" -type f | wc -l)
    # libFuzzer stops itself after SECONDS; the outer timeout only catches a
    # fuzzer that cannot (a hang outside its own -timeout)
    limit=$((seconds + 300))
    tmo=
    command -v timeout >/dev/null 2>&1 && tmo="timeout -k 30 $limit"
    # shellcheck disable=SC2086
    (cd "$work" && TMPDIR=$work/tmp $tmo $nice_cmd "$bin" -max_total_time="$seconds" \
        -max_len="$len" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/" $dict ${FUZZ_ARGS:-} "$corpus") >"$log" 2>&1
    rc=$?
    after=$(find "$crashes" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    # the last status line: "#N DONE cov: X ft: Y corp: ..." (or the last
    # progress line if it stopped early)
    status=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
    cov=$(echo "$status" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$status" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(echo "$status" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    [ -n "$execs" ] || execs=$(echo "$status" | sed -n 's/^#\([0-9]*\).*/\1/p')
    findings=$((after - before))
    verdict=ok
    if [ $rc -ne 0 ] || [ "$findings" -gt 0 ]; then
        failed=1
        verdict="FAILED (exit $rc)"
        [ $rc -eq 124 ] && verdict="FAILED (hung past ${limit}s)"
        [ "$findings" -gt 0 ] || findings="?"
    fi
    echo "$t: $verdict execs=${execs:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} findings=$findings log=$log"
    if [ "$verdict" != ok ]; then
        grep -E 'Test unit written to|^SUMMARY|fuzz invariant failed' "$log" | head -n 4 |
            sed 's/^/    /'
    fi
done
exit $failed
