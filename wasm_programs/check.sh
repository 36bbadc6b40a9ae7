#!/bin/sh
# Runs the guests and checks their results, as a test of the guest programs
# themselves (not of the replicode runtime, which has its own tests).
#
#   ./check.sh native   uses build/native/* (make native-all)
#   ./check.sh node     uses build/*.wasm under Node's WASI (make; needs node >= 20)
#
# Every run works in a fresh temporary directory, removed at the end. Prints one
# line per check and exits 1 if any failed.
set -u
MODE=${1:-native}
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/guestcheck.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

case "$MODE" in
native) DIR=$TMP ;;
node) DIR=/data ;;
*) echo "usage: $0 native|node" >&2; exit 2 ;;
esac

# run PROG [ARGS...]: runs a guest with DIR as its data directory.
run() {
    prog=$1
    shift
    if [ "$MODE" = native ]; then
        "$HERE/build/native/$prog" "$@"
    else
        node "$HERE/run_node.mjs" "$HERE/build/$prog.wasm" "$TMP" /data "$@"
    fi
}

# Results go to a file: checks fed by a pipe run in a subshell, where counters vanish.
ok() { echo "ok   $1" | tee -a "$TMP/results"; }
bad() { echo "FAIL $1: $2" | tee -a "$TMP/results"; }

# expect NAME WANT_EXIT WANT_OUTPUT_FILE_OR_- COMMAND...: stdin comes from the caller.
expect() {
    name=$1 want_exit=$2 want_out=$3
    shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    code=$?
    if [ "$code" != "$want_exit" ]; then
        bad "$name" "exit $code, expected $want_exit; stderr: $(head -c 300 "$TMP/err")"
    elif [ "$want_out" != - ] && ! cmp -s "$TMP/out" "$want_out"; then
        bad "$name" "output differs: $(diff "$want_out" "$TMP/out" | head -5 | tr '\n' ' ')"
    else
        ok "$name"
    fi
}

# contains NAME PATTERN: the last command's stdout has a line matching PATTERN.
contains() {
    if grep -q -- "$2" "$TMP/out"; then ok "$1"; else bad "$1" "no line matching '$2'"; fi
}

printf 'hello from replicode\nargc=3\nargv[0]=%s\nargv[1]=a\nargv[2]=b c\n' \
    "$([ "$MODE" = native ] && echo "$HERE/build/native/hello" || echo "$HERE/build/hello.wasm")" \
    >"$TMP/want_hello"
expect hello 0 "$TMP/want_hello" run hello a "b c" </dev/null

printf 'echo: one\necho: \necho: two words\necho: no newline\n' >"$TMP/want_echo"
printf 'one\n\ntwo words\nno newline' | expect echo_server 0 "$TMP/want_echo" run echo_server

cat >"$TMP/want_kv1" <<'OUT'
OK
OK
OK
VALUE hello world
NOT_FOUND
KEY a hello world
KEY ab x
END
OK
NOT_FOUND
ERR unknown command 'FOO'
ERR empty command
ERR SET needs a key and a value
ERR GET needs exactly one key
OUT
printf 'SET b 2\nSET a hello world\nSET ab x\nGET a\nGET zz\nSCAN a\nDEL b\nDEL b\nFOO x\n\nSET k\nGET a b\n' |
    expect kv_server_session 0 "$TMP/want_kv1" run kv_server "$DIR/kv.log"
printf 'KEY a hello world\nKEY ab x\nEND\n' >"$TMP/want_kv2"
printf 'SCAN\n' | expect kv_server_replay 0 "$TMP/want_kv2" run kv_server "$DIR/kv.log"
# $DIR/kv.log is $TMP/kv.log in both modes (node preopens $TMP as /data).
printf 'S torn' >>"$TMP/kv.log"
printf 'SCAN\n' | expect kv_server_torn_record 0 "$TMP/want_kv2" run kv_server "$DIR/kv.log"
printf 'X corrupt\nS a 1\n' >>"$TMP/kv.log"
printf 'SCAN\n' | expect kv_server_corrupt_log 1 - run kv_server "$DIR/kv.log"

run producer 500 3 >"$TMP/pipe" </dev/null
expect producer_consumer 0 - run consumer -q <"$TMP/pipe"
contains producer_consumer_summary '^consumer: lines=500 sum=125250 bytes=6392 order=ok$'
printf 'item 1\nitem 3\n' | expect consumer_detects_gap 1 - run consumer -q

printf 'energy before: -0.169075164\nenergy after: -0.169087605\nsteps: 1000\n' >"$TMP/want_nbody"
expect nbody_1000 0 "$TMP/want_nbody" run nbody 1000 </dev/null
expect intkernel 0 - run intkernel 1000000 2 </dev/null
contains intkernel_prime_count '^primes below 1000000: 78498$'
# Golden checksums: the same in both modes, which is the point (native == wasm).
contains intkernel_checksum '^checksum: f1792076d14a0408$'
expect fileworkload 0 - run fileworkload "$DIR" 300 2 </dev/null
contains fileworkload_bytes '^bytes: 190068$'
contains fileworkload_checksum '^checksum: 93431828e8190155$'
printf 'memtouch: ready, 1048576 bytes in 256 pages of 4096\ntouched 2 pages, checksum fa045f7ac652df0e\nERR expected a page count 0..256\n' >"$TMP/want_memtouch"
printf '\nx\n' | expect memtouch 0 "$TMP/want_memtouch" run memtouch 1
printf 'input 1: a\nok 1\ninput 2: exit 7\n' >"$TMP/want_faulty"
printf 'a\nexit 7\nnever\n' | expect faulty_server_exit 7 "$TMP/want_faulty" run faulty_server "$DIR/faulty.log"
printf '1 a\n2 exit 7\n' >"$TMP/want_faulty_log"
if cmp -s "$TMP/faulty.log" "$TMP/want_faulty_log"; then ok faulty_server_log; else bad faulty_server_log "log differs"; fi
expect recursion_bounded 0 - run recursion 10000 </dev/null
expect fd_exhaust 0 - run fd_exhaust "$DIR" </dev/null
contains fd_exhaust_emfile 'before EMFILE$'
expect clock_random 0 - run clock_random 1 </dev/null

if [ "$MODE" = native ]; then
    # uvwasi differs from POSIX in ways fileops reports (see run_node.mjs), and has no
    # fcntl(F_SETFL); these run natively only.
    expect fileops 0 - run fileops "$DIR" </dev/null
    contains fileops_summary '^fileops: [0-9]* checks passed$'
    expect membomb 0 - run membomb </dev/null
    : | expect poll_timeout_eof 0 - run poll_timeout 10 2
    contains poll_timeout_eof_line '^round 1: eof after'
    sleep 2 | expect nonblock_eagain 0 - run nonblock
    contains nonblock_eagain_line '^nonblock: read -> EAGAIN$'
else
    # On a real host the escape probes succeed (and write outside DIR), so they run
    # only inside a sandbox.
    expect escape_dotdot 0 - run escape_dotdot "$DIR" </dev/null
    expect escape_symlink 0 - run escape_symlink "$DIR" </dev/null
fi

PASSED=$(grep -c '^ok' "$TMP/results")
FAILED=$(grep -c '^FAIL' "$TMP/results")
echo "guest checks ($MODE): $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
