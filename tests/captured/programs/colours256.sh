#!/bin/sh
# The xterm 256-colour palette as background swatches, then as foreground text.
i=0
while [ $i -lt 16 ]; do printf '\033[48;5;%dm %3d \033[0m' $i $i; i=$((i+1)); [ $((i % 8)) -eq 0 ] && printf '\n'; done
i=16
while [ $i -lt 232 ]; do printf '\033[48;5;%dm%4d' $i $i; i=$((i+1)); [ $(((i - 16) % 18)) -eq 0 ] && printf '\033[0m\n'; done
i=232
while [ $i -lt 256 ]; do printf '\033[38;5;%dm%3d ' $i $i; i=$((i+1)); done
printf '\033[0m\n'
for c in 30 31 32 33 34 35 36 37 90 91 92 93 94 95 96 97; do printf '\033[%dm%3d\033[1m#\033[0m' $c $c; done
printf '\n'
for c in 40 41 42 43 44 45 46 47 100 101 102 103 104 105 106 107; do printf '\033[%dm%4d\033[0m' $c $c; done
printf '\n'
