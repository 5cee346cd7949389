# Time vs sequence length, log-log: gnuplot -e "csv='sweep.csv'; png='sweep.png'; title='...'" bench/sweep.gp
# csv columns: T, chunk_ms, recurrent_ms, softmax_ms, ... (empty = not measured)
if (!exists("title")) title = "lina forward, B=1 H=8 K=V=64"
set terminal pngcairo size 900,600 enhanced font "sans,11"
set output png
set datafile separator ","
set key top left
set logscale xy 2
set format x "%.0f"
set logscale y 10
set format y "10^{%L}"
set xlabel "sequence length T (tokens)"
set ylabel "forward time (ms, median)"
set title title
set grid
plot csv skip 1 using 1:2 with linespoints lw 2 pt 7 title "chunk (linear attention)", \
     csv skip 1 using 1:3 with linespoints lw 2 pt 5 title "recurrent", \
     csv skip 1 using 1:4 with linespoints lw 2 pt 9 title "softmax (causal, streaming)"
