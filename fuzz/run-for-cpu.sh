#!/usr/bin/env bash
# Fuzzes one target until its libFuzzer process has used a given amount of CPU time (default
# 1830 s), however busy the machine is, then stops it with SIGINT so libFuzzer prints its final
# stats. Run from the repository root:  fuzz/run-for-cpu.sh csr 1830
# Several can run at once (one per core); each logs to fuzz/logs/<target>.log.
set -u
t=${1:?target}; budget=${2:-1830}
mkdir -p "fuzz/corpus/$t" fuzz/logs
extra=()
seeds=("fuzz/seeds/$t")
case $t in
  session_steps|admin_json) extra+=(-dict=fuzz/syncml.dict) ;;
  syncml_roundtrip) extra+=(-dict=fuzz/syncml.dict); seeds=(protocol-fixtures/syncml) ;;
  soap_envelope)
    seeds+=(protocol-fixtures/discovery protocol-fixtures/policy protocol-fixtures/enroll)
    [ -d ../shared/conformance ] && seeds+=(../shared/conformance) ;;
esac
log="fuzz/logs/$t.log"
start=$(date +%s)
nice -n 15 cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
  -max_total_time=86400 -max_len=16384 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 &
cargo_pid=$!
pid=""
for _ in $(seq 1 1800); do # the first build can take a while
  pid=$(pgrep -f "fuzz/target/.*/release/$t " | head -n 1)
  [ -n "$pid" ] && break
  kill -0 "$cargo_pid" 2>/dev/null || break
  sleep 1
done
tck=$(getconf CLK_TCK)
cpu=0
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
  read -r ut st < <(awk '{print $14, $15}' "/proc/$pid/stat")
  cpu=$(((ut + st) / tck))
  if [ "$cpu" -ge "$budget" ]; then
    kill -INT "$pid"
    break
  fi
  sleep 10
done
wait "$cargo_pid"
rc=$?
echo "$t: ${cpu} s of CPU in $(($(date +%s) - start)) s of wall time, exit $rc; $(grep -c 'ERROR: libFuzzer' "$log") libFuzzer errors; log $log"
grep -E '^stat::number_of_executed_units' "$log"
