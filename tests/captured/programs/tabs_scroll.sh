#!/bin/sh
# Scroll regions, insert/delete lines and characters, tab stops, save/restore cursor.
printf '\033[2J\033[H'
i=1; while [ $i -le 20 ]; do printf 'line %02d abcdefghijklmnopqrstuvwxyz\n' $i; i=$((i+1)); done
printf '\033[5;15r'              # scroll region 5..15
printf '\033[15;1H\n\nnew at bottom of region'
printf '\033[5;1H\033M\033Mreverse-indexed'
printf '\033[8;1H\033[2Linserted two lines'
printf '\033[12;1H\033[1M'
printf '\033[r'
printf '\033[3;5H\033[4P\033[3@XYZ'
printf '\033[4;10H\033[5X'
printf '\0337\033[22;1Hsaved cursor moved\0338restored'
printf '\033[23;1H\033[3g\033[1;10H\033H\033[1;30H\033H\033[23;1Ha\tb\tc\033[1;1H'
printf '\033[24;1H\033[1;1H\033[24;3Hrow 24\033[24;70H\033[1Kx'
printf '\033[20;1H\033[2S'
printf '\033[25;1Hbottom'
