#!/usr/bin/env bash
# Prefill and decode tokens/s of ~100M-parameter random-weight checkpoints of
# every family lina loads (bench/hf_make_models.py), next to llama.cpp's
# llama-bench on the same weights (f32 GGUF) where llama.cpp has the architecture.
#
#   bench/hf_bench.sh WORKDIR [--build build] [--llama-src DIR --llama-bench BIN]
#                     [--threads "1 2"] [--families "gla ... qwen3_next"] [--repeat 2]
#
# WORKDIR (outside the repository, e.g. /tmp/hf_bench) receives the checkpoints
# (about 400 MB each), the GGUF files, lina.jsonl and llama.jsonl. For each
# family and thread count, lina (bench/hf_speed.c, built against BUILD/liblina.a)
# runs prefill 512 and 2048 and decode 128, immediately followed by
# `llama-bench -p 512,2048 -n 128 -t N -r REPEAT` on the same model: the two
# share the machine's load of that moment. Both report each test REPEAT times.
# --llama-src is llama.cpp's source (its convert_hf_to_gguf.py, run through
# bench/hf_gguf_convert.py with PYTHON, default /usr/bin/python3; it needs
# transformers and sentencepiece); without --llama-bench only lina runs.
# bench/hf_bench_table.py WORKDIR prints the Markdown table of docs/HF_BENCH.md.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 1 ] || { usage >&2; exit 2; }
case $1 in -h|--help) usage; exit 0 ;; esac
work=$1; shift
build=build llama_src= llama_bench= threads="1 2" repeat=2
families="gla delta_net gated_deltanet retnet linear_attn hgrn2 rwkv7 mamba2 qwen3_next"
while [ $# -gt 0 ]; do
    case $1 in
        --build) build=$2 ;;
        --llama-src) llama_src=$2 ;;
        --llama-bench) llama_bench=$2 ;;
        --threads) threads=$2 ;;
        --families) families=$2 ;;
        --repeat) repeat=$2 ;;
        *) echo "hf_bench.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift 2
done
here=$(cd "$(dirname "$0")/.." && pwd)
tokenizers=${TOKENIZERS:-$here/../shared/data/tokenizers}
python=${PYTHON:-/usr/bin/python3}
[ -f "$build/liblina.a" ] || { echo "hf_bench.sh: $build/liblina.a not found (make BUILD=$build)" >&2; exit 2; }
mkdir -p "$work"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# lina's timer, linked like the tests (Makefile: BLAS and cJSON flags)
blas_cflags=$(pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-openmp)
blas_libs=$(pkg-config --libs openblas 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas")
cc -std=c11 -D_GNU_SOURCE -O2 -march=native -fopenmp -Wall -Wextra -I"$here/include" $blas_cflags \
    -o "$work/hf_speed" "$here/bench/hf_speed.c" "$build/liblina.a" -lm -fopenmp $blas_libs -lcjson -lpthread

# llama.cpp's architecture name in convert_hf_to_gguf.py, or nothing
llama_arch() { case $1 in mamba2|rwkv7|qwen3_next) echo "$1" ;; esac; }

for fam in $families; do
    dir=$work/$fam
    [ -f "$dir/model.safetensors" ] || OMP_NUM_THREADS=1 "$python" "$here/bench/hf_make_models.py" "$work" --family "$fam"
    if [ -n "$llama_src" ] && [ -n "$(llama_arch "$fam")" ] && [ ! -f "$work/$fam.gguf" ]; then
        case $fam in # the tokenizer files the converter reads (vocab sizes match hf_make_models.py)
            rwkv7) cp "$tokenizers/rwkv_vocab_v20230424.txt" "$dir/" ;;
            qwen3_next) cp "$tokenizers/qwen3/tokenizer.json" "$dir/" ;;
            mamba2) ;; # none: the converter falls back to its built-in GPT-NeoX vocabulary
        esac
        extra=; [ "$fam" = qwen3_next ] && extra=--no-mtp # no multi-token-prediction head in these weights
        (OMP_NUM_THREADS=1 "$python" "$here/bench/hf_gguf_convert.py" "$llama_src" "$dir" \
            --outtype f32 --outfile "$work/$fam.gguf" $extra > "$work/$fam.convert.log" 2>&1) ||
            { echo "hf_bench.sh: converting $fam failed, see $work/$fam.convert.log" >&2; exit 1; }
    fi
done

for fam in $families; do
    for th in $threads; do
        echo "== $fam, $th thread(s), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        "$work/hf_speed" "$work/$fam" --threads "$th" --prompt 512 --prompt 2048 --decode 128 --repeat "$repeat" |
            tee -a "$work/lina.jsonl"
        if [ -n "$llama_bench" ] && [ -f "$work/$fam.gguf" ]; then
            "$llama_bench" -m "$work/$fam.gguf" -p 512,2048 -n 128 -t "$th" -r "$repeat" -o jsonl 2>/dev/null |
                sed "s/^{/{\"family\": \"$fam\", \"load1\": $(cut -d' ' -f1 /proc/loadavg), /" | tee -a "$work/llama.jsonl"
        fi
    done
done
