#!/usr/bin/env bash
# Forward time vs sequence length: chunk vs recurrent vs softmax, B=1 H=8 K=V=64.
#
#   bench/sweep.sh OUTDIR [--lina build/lina] [--op linear] [--threads 1] [--tmax 65536]
#
# T = 256, 512, ..., TMAX (powers of 2). Softmax is quadratic: it stops once the
# next length would take more than ~20 s (4x the last median). Writes
# OUTDIR/sweep.csv, OUTDIR/sweep.jsonl (every `lina bench ops --json` record) and
# OUTDIR/sweep.png (gnuplot, log-log), then prints where the linear-attention
# forms overtake softmax.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h|--help) usage; exit 0 ;; esac
out=$1; shift
lina=build/lina op=linear threads=1 tmax=65536
while [ $# -gt 0 ]; do
    case $1 in
        --lina) lina=$2 ;;
        --op) op=$2 ;;
        --threads) threads=$2 ;;
        --tmax) tmax=$2 ;;
        *) echo "sweep.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
[ -x "$lina" ] || { echo "sweep.sh: lina binary '$lina' not found (make, or pass --lina)" >&2; exit 2; }
[[ $tmax =~ ^[0-9]+$ ]] && [ "$tmax" -ge 256 ] || { echo "sweep.sh: --tmax '$tmax' must be >= 256" >&2; exit 2; }
command -v jq >/dev/null || { echo "sweep.sh: needs jq" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
csv=$out/sweep.csv jsonl=$out/sweep.jsonl
: > "$jsonl"
echo "T,chunk_ms,recurrent_ms,softmax_ms,chunk_gflops,recurrent_gflops,softmax_gflops,sgemm_gflops" > "$csv"

# median ms of one configuration; fields appended to the JSONL log
measure() { # op form T -> prints "fwd_ms gflops sgemm_gflops"
    local repeat=5
    [ "$3" -ge 16384 ] && repeat=3
    local j
    j=$("$lina" bench ops --op "$1" --form "$2" --B 1 --T "$3" --H 8 --K 64 --V 64 \
        --threads "$threads" --repeat "$repeat" --json)
    echo "$j" >> "$jsonl"
    jq -r '"\(.fwd_ms) \(.gflops) \(.sgemm_gflops)"' <<<"$j"
}

softmax_ms=0 softmax_on=1
for ((T = 256; T <= tmax; T *= 2)); do
    read -r c_ms c_gf sg <<<"$(measure "$op" chunk "$T")"
    read -r r_ms r_gf _ <<<"$(measure "$op" recurrent "$T")"
    s_ms="" s_gf=""
    # quadratic: the next length costs ~4x; stop before a call passes ~20 s
    if [ "$softmax_on" = 1 ] && awk -v m="$softmax_ms" 'BEGIN { exit !(4 * m < 20000) }'; then
        read -r s_ms s_gf _ <<<"$(measure softmax auto "$T")"
        softmax_ms=$s_ms
    else
        softmax_on=0
    fi
    echo "$T,$c_ms,$r_ms,$s_ms,$c_gf,$r_gf,$s_gf,$sg" >> "$csv"
    printf 'T=%-6d chunk %10.2f ms  recurrent %10.2f ms  softmax %s\n' "$T" "$c_ms" "$r_ms" \
        "${s_ms:+$(printf '%10.2f ms' "$s_ms")}"
done

gnuplot -e "csv='$csv'; png='$out/sweep.png'; title='lina $op forward vs softmax, B=1 H=8 K=V=64, $threads thread(s)'" \
    "$here/sweep.gp"
echo "wrote $csv, $jsonl, $out/sweep.png"

# Crossovers: the first T from which a form stays faster than softmax.
awk -F, -v op="$op" 'NR > 1 && $4 != "" {
        for (c = 2; c <= 3; c++) if ($c < $4 && !(c in at)) at[c] = $1; else if ($c >= $4) delete at[c]
        last = $1 }
    END {
        split("x,chunk,recurrent", name, ",")
        for (c = 2; c <= 3; c++)
            if (c in at) printf "%s %s overtakes softmax at T = %d (and stays ahead up to T = %d, the last softmax point)\n", op, name[c], at[c], last
            else printf "%s %s does not overtake softmax up to T = %d\n", op, name[c], last
    }' "$csv"
