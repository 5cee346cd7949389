# Plots for bench/model_bench.sh: gnuplot -e "dir='OUT'" bench/model_bench.gp
set terminal pngcairo size 900,560 font ",11"
set key top right
set grid
set datafile separator "\t"
have_file(f) = system("test -s " . f . " && echo 1 || echo 0") + 0

if (have_file(dir."/gen.tsv")) {
    set output dir."/models_gen_speed.png"
    set multiplot layout 1,2 title "lina generate, 1 thread: decode after a context of N bytes"
    set logscale x 2
    set logscale y
    set xlabel "context length N (tokens)"
    set ylabel "decode tokens/s"
    plot "< grep ^gated_deltanet ".dir."/gen.tsv" using 2:4 with linespoints lw 2 title "Gated DeltaNet", \
         "< grep ^softmax ".dir."/gen.tsv" using 2:4 with linespoints lw 2 title "softmax (KV cache)"
    set ylabel "peak RSS while decoding (MB)"
    plot "< grep ^gated_deltanet ".dir."/gen.tsv" using 2:8 with linespoints lw 2 title "Gated DeltaNet", \
         "< grep ^softmax ".dir."/gen.tsv" using 2:8 with linespoints lw 2 title "softmax (KV cache)"
    unset multiplot
    unset logscale
}
if (have_file(dir."/train.tsv")) {
    set output dir."/models_train_speed.png"
    set title "lina train, batch 1, 1 thread: forward + backward + AdamW"
    set logscale x 2
    set logscale y
    set xlabel "sequence length T"
    set ylabel "training tokens/s"
    plot "< grep ^gated_deltanet ".dir."/train.tsv" using 2:4 with linespoints lw 2 title "Gated DeltaNet", \
         "< grep ^softmax ".dir."/train.tsv" using 2:4 with linespoints lw 2 title "softmax + RoPE"
    unset logscale
}
if (have_file(dir."/quality.tsv")) {
    set output dir."/models_quality.png"
    set title "tinyshakespeare validation loss, dim 128, 4 layers, batch 8 x 128"
    set xlabel "step"
    set ylabel "validation loss (bits/char)"
    plot "< grep ^gated_deltanet ".dir."/quality.tsv" using 2:4 with linespoints lw 2 title "Gated DeltaNet", \
         "< grep ^softmax ".dir."/quality.tsv" using 2:4 with linespoints lw 2 title "softmax + RoPE"
}
