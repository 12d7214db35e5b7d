#!/bin/sh
# 24-bit colour gradients, in the semicolon and the colon forms of SGR 38/48.
row=0
while [ $row -lt 6 ]; do
  col=0
  while [ $col -lt 76 ]; do
    r=$((col * 255 / 75)); g=$((row * 50)); b=$((255 - col * 255 / 75))
    printf '\033[48;2;%d;%d;%dm\033[38;2;%d;%d;%dm%s' $r $g $b $b $g $r "$(printf '%x' $((col % 16)))"
    col=$((col + 1))
  done
  printf '\033[0m\n'
  row=$((row + 1))
done
printf '\033[38:2::255:128:0mcolon form orange\033[0m \033[48:2::0:64:128mcolon form navy bg\033[0m\n'
printf '\033[38:5:208mcolon 256 colour 208\033[0m \033[38;2;10;200;30;1mgreen bold\033[0m\n'
