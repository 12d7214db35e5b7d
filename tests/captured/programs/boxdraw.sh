#!/bin/sh
# DEC special graphics through G0 (ESC ( 0) and G1 (ESC ) 0 with SO/SI), and Unicode boxes.
printf '\033(0lqqqqwqqqqk\nx    x    x\ntqqqqnqqqqu\nx    x    x\nmqqqqvqqqqj\033(B\n'
printf '\033)0\016lqqk\017 shifted \016x  x\017 \016mqqj\017 back to ASCII: lqk\n'
printf '\033(0`afgjklmnopqrstuvwxyz{|}~\033(B <- all graphics\n'
printf '┌──────┬──────┐\n│ cell │ cell │\n├──────┼──────┤\n╔══════╦══════╗\n║ dbl  ║ dbl  ║\n╚══════╩══════╝\n'
printf '╭─────╮ ┏━━━━━┓ \n│round│ ┃heavy┃\n╰─────╯ ┗━━━━━┛\n'
printf '\033(0\033[7m lqk \033[0m\033(B reverse graphics\n'
