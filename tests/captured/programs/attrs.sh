#!/bin/sh
# SGR attributes, alone and combined, with resets of single attributes.
for a in 1 2 3 4 5 7 8 9 21 53; do printf '\033[%dmattr %-3d\033[0m ' $a $a; done
printf '\n'
printf '\033[1;3;4mbold italic underline\033[22m no bold\033[23m no italic\033[24m plain\033[0m\n'
printf '\033[7;31mreverse red\033[27m red\033[39m default\033[0m\n'
printf '\033[1;2mbold and dim\033[22mnormal \033[2;33mdim yellow\033[0m\n'
printf '\033[4:3mcurly\033[4:0m none \033[4:2mdouble\033[0m \033[9;34mstrike blue\033[29m blue\033[0m\n'
printf '\033[41m red background, then erase to the end of line:\033[K\033[0m\n'
printf '\033[44m\033[2K\033[0mabove: a whole line erased in blue\n'
printf '\033[1;38;5;196;48;5;22mbright red on dark green\033[0m\n'
printf '\033[5;7;9mblink reverse strike\033[25;27;29m off\033[0m\n'
printf '\033[8mhidden text\033[28m visible text\033[0m\n'
printf '\033[3;4;7;1m\033[0;32mreset then green\033[0m\n'
printf 'tab\tstops\tand\ttabs\there\n'
