#!/bin/sh
# Re-record the whole corpus (or the cases named as arguments) with record.py.
# Every case is one line below: its name, size, key script and command.
# Recordings of live programs (top, htop, watch, ls, dates) differ from run to
# run; that is fine, each case's reference is made from its own bytes.
set -u
cd "$(dirname "$0")"
P=programs
S=scripts
only="$*"

rec() {
    name=$1
    shift
    if [ -n "$only" ]; then
        case " $only " in *" $name "*) ;; *) return 0 ;; esac
    fi
    python3 record.py "$name" "$@" || echo "FAILED: $name" >&2
}

# Editors and pagers (full screen, alternate screen, syntax colour).
rec vim-python --script $S/vim-python.keys --quit '\e:qa!\r' --file $P/sample.py -- vim sample.py
rec vim-vsplit --script $S/vim-vsplit.keys --quit '\e:qa!\r' --file $P/sample.c --file $P/sample.py -- vim sample.c
rec vim-edit-100x30 --size 100x30 --script $S/vim-edit.keys --quit '\e:qa!\r' --file $P/sample.c -- vim sample.c
rec vim-scroll --script $S/vim-scroll.keys --quit '\e:qa!\r' --file /usr/share/common-licenses/GPL-3 -- vim GPL-3
rec less-long --script $S/less-long.keys --quit q --file /usr/share/common-licenses/GPL-3 -- less GPL-3
rec less-numbers-60x20 --size 60x20 --script $S/less-numbers.keys --quit q --file $P/sample.c -- less -N sample.c
rec man-ls --script $S/man-ls.keys --quit q --version-cmd 'man --version' -- man ls
rec man-bash-100x30 --size 100x30 --script $S/man-bash.keys --quit q --version-cmd 'man --version' -- man bash
rec nano --script $S/nano.keys --quit '^Xn' -- nano notes.txt
rec nano-python-60x20 --size 60x20 --script $S/nano-python.keys --quit '^X' --file $P/sample.py -- nano -l sample.py

# System monitors and file manager.
rec top --script $S/top.keys --quit q --version-cmd 'top -V' -- top -d 1
rec htop --script $S/htop.keys --quit q -- htop -d 10
rec htop-100x30 --size 100x30 --script $S/htop.keys --quit q -- htop -d 10
rec mc --script $S/mc.keys --quit '\e[21~' -- mc --nosubshell /usr/share
rec mc-menu-100x30 --size 100x30 --script $S/mc-menu.keys --quit '\e\e\e[21~' -- mc --nosubshell /usr/share
rec watch --script $S/watch.keys --quit '^C' --version-cmd 'watch -v' -- watch -n 0.5 date

# Dialogs.
rec dialog-menu --script $S/dialog-menu.keys --quit '\e\e' -- dialog --title 'Pick one' --menu 'Choose a fruit:' 15 50 5 1 Apple 2 Banana 3 Cherry 4 Date 5 Elderberry 6 Fig
rec dialog-checklist-60x20 --size 60x20 --script $S/dialog-checklist.keys --quit '\e\e' -- dialog --checklist 'Options to enable:' 12 40 4 a 'Alpha' on b 'Beta' off c 'Gamma' off d 'Delta' on
rec whiptail-yesno --script $S/whiptail-yesno.keys --quit '\r' -- whiptail --title 'Question' --yesno 'Do you want to continue?' 10 40

# Shell output and interaction.
rec git-log-graph --file $P/gitlog.sh -- sh gitlog.sh
rec ls-color -- sh -c 'ls --color=always -la /usr/bin | head -30'
rec tree -- tree -C /usr/share/doc/vim /usr/share/vim/vim90/colors
rec bash-readline --script $S/bash-readline.keys --quit 'exit\r' --env 'PS1=\u@box:\w\$ ' -- bash --norc --noprofile -i
rec tmux-inside --script $S/tmux-inside.keys --quit '^B:kill-server\r' --env 'PS1=\w\$ ' -- tmux -L vzvnc-inner -f /dev/null new-session bash --norc --noprofile -i
tmux -L vzvnc-inner kill-server 2>/dev/null  # the inner server outlives a hung-up client

# Curses and synthetic screens.
rec curses-demo --script $S/curses-demo.keys --quit q --file $P/curses_demo.py -- python3 curses_demo.py
rec curses-demo-60x20 --size 60x20 --script $S/curses-demo.keys --quit q --file $P/curses_demo.py -- python3 curses_demo.py
rec cjk-emoji --file $P/cjk_emoji.sh -- sh cjk_emoji.sh
rec boxdraw --file $P/boxdraw.sh -- sh boxdraw.sh
rec boxdraw-dec-simple -- printf '\033(0lqqk\nx  x\nmqqj\033(B\n'
rec colours-256 --file $P/colours256.sh -- sh colours256.sh
rec truecolour --file $P/truecolour.sh -- sh truecolour.sh
rec sgr-attributes --file $P/attrs.sh -- sh attrs.sh
rec scroll-edit --file $P/tabs_scroll.sh -- sh tabs_scroll.sh

# vttest screens that apply to an 80-column terminal (no DECCOLM, no reports).
for screen in cursor-box autowrap ctrl-in-esc leading-zeros wraparound tabs scroll-region \
    origin rendition charsets accordion insert-mode delete-char insert-char; do
    rec vttest-$screen --script $S/vttest-$screen.keys -- vttest
done
