#!/bin/bash
# measure_shapes.sh VENV OUTDIR [SHAPES] [REFERENCE]: wall, user seconds and peak RSS of
# VENV's tcpflow-check on the connection-cost shapes and the reference capture, text and
# json, twice each ("TAG RSS_KiB USER_S WALL_S | RSS_KiB USER_S WALL_S" a line on stdout;
# take the better of the two). SHAPES (default /tmp/shapes) holds the shapes written by
#   for n in 100000 200000; do python bench/generate.py --shape open --connections $n --out SHAPES/s-open-$n.pcap; done
#   (the same for closing 100000/200000 and flood 200000/400000), and
#   python bench/generate.py --shape window --connections 100000 --out SHAPES/s-window-100000.pcap
# REFERENCE (default /tmp/bench100k.pcap) is `python bench/generate.py --connections 100000`.
# Bytes a connection are the difference of the N and 2N runs' RSS divided by N; bench/README.md.
set -u
venv=$1; out=$2; shapes=${3:-/tmp/shapes}; reference=${4:-/tmp/bench100k.pcap}
mkdir -p "$out"
run() { # tag capture args...
  tag=$1; cap=$2; shift 2
  for i in 1 2; do
    /usr/bin/time -f "%M %U %e" -o "$out/$tag.$i" "$venv/bin/tcpflow-check" "$cap" "$@" \
      -o /dev/null -q > /dev/null 2> "$out/$tag.err"
  done
  echo "$tag $(tr '\n' ' ' < "$out/$tag.1") | $(tr '\n' ' ' < "$out/$tag.2")"
}
for fmt in text json; do
  for shape in open-100000 open-200000 closing-100000 closing-200000 flood-200000 flood-400000; do
    run "$fmt-$shape" "$shapes/s-$shape.pcap" -f "$fmt" --max-connections 10000000
  done
  run "$fmt-window" "$shapes/s-window-100000.pcap" -f "$fmt"
  run "$fmt-bench" "$reference" -f "$fmt"
  run "$fmt-bench-j2" "$reference" -f "$fmt" -j 2
  run "$fmt-flood-default" "$shapes/s-flood-200000.pcap" -f "$fmt"
  for n in 100000 200000; do
    run "$fmt-closing-default-$n" "$shapes/s-closing-$n.pcap" -f "$fmt"
  done
done
