#!/usr/bin/env bash
# lina vs ggml's CPU ops, side by side (each ggml op immediately followed by lina's).
#
#   bench/compare_ggml.sh GGML_TEST_BACKEND_OPS [--lina build/lina] [--threads "1 2"]
#
# GGML_TEST_BACKEND_OPS is ggml's tests/test-backend-ops, built OUTSIDE this
# repository with two local edits (never commit ggml code here), see
# docs/BENCHMARKS.md: perf cases at H=8, D=64, T=4096, one sequence, and the
# CPU thread count read from $BENCH_THREADS (upstream uses every core).
# Pairs: GATED_LINEAR_ATTN ~ lina gla (vector gate), GATED_DELTA_NET ~ lina
# gated_delta, GATED_DELTA_NET kda=1 ~ lina kda; RWKV_WKV7 has no lina op
# (its ggml time is printed for reference). ggml reports the mean us/run over
# its own repeat count; lina the median of 5. Forward only (ggml has no backward).
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h|--help) usage; exit 0 ;; esac
ggml=$1; shift
lina=build/lina threads="1 2"
while [ $# -gt 0 ]; do
    case $1 in
        --lina) lina=$2 ;;
        --threads) threads=$2 ;;
        *) echo "compare_ggml.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
[ -x "$ggml" ] || { echo "compare_ggml.sh: '$ggml' is not an executable" >&2; exit 2; }
[ -x "$lina" ] || { echo "compare_ggml.sh: lina binary '$lina' not found" >&2; exit 2; }

sel='head_count=8,head_size=64,n_seq_tokens=4096,n_seqs=1'
ggml_ms() { # op-filter extra-regex threads -> mean ms per run
    BENCH_THREADS=$3 "$ggml" perf -b CPU -o "$1" -p "$sel$2" 2>&1 |
        sed -n 's/.* - *\([0-9.]*\) us\/run.*/\1/p' | head -1 | awk '{ printf "%.3f", $1 / 1000 }'
}
lina_ms() { # op threads -> median ms
    "$lina" bench ops --op "$1" --form chunk --B 1 --T 4096 --H 8 --K 64 --V 64 --threads "$2" \
        --repeat 5 --json | jq -r '"\(.fwd_ms) \(.gflops) \(.sgemm_gflops)"'
}

printf '%-32s %3s %10s %10s %8s %10s %10s\n' "ggml op ~ lina op" thr "ggml ms" "lina ms" "speedup" "lina GF/s" "sgemm GF/s"
for th in $threads; do
    for pair in "GATED_LINEAR_ATTN||gla|GATED_LINEAR_ATTN" \
                "GATED_DELTA_NET|,.*kda=0|gated_delta|GATED_DELTA_NET" \
                "GATED_DELTA_NET|,.*kda=1|kda|GATED_DELTA_NET kda=1" "RWKV_WKV7||-|RWKV_WKV7"; do
        IFS='|' read -r op extra lop label <<<"$pair"
        g=$(ggml_ms "$op" "$extra" "$th")
        if [ "$lop" = "-" ]; then
            printf '%-32s %3d %10.2f %10s %8s\n' "$label ~ (none)" "$th" "$g" - -
            continue
        fi
        read -r l gf sg <<<"$(lina_ms "$lop" "$th")"
        printf '%-32s %3d %10.2f %10.2f %8.2f %10.1f %10.1f\n' "$label ~ $lop" "$th" "$g" "$l" \
            "$(awk -v a="$g" -v b="$l" 'BEGIN { print a / b }')" "$gf" "$sg"
    done
done
