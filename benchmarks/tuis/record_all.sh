#!/bin/sh
# Re-record the timed TUI recordings that tuis.py replays (or those named as
# arguments), with tests/captured/record.py --timed. One `rec` line per
# recording: its name, key script and command, all at 80x25. Live programs
# (htop, top, mc's dates, the clock) differ from run to run; any run will do.
set -u
cd "$(dirname "$0")"
RECORD=../../tests/captured/record.py
S=scripts
GPL=/usr/share/common-licenses/GPL-3
only="$*"

rec() {
    name=$1
    shift
    if [ -n "$only" ]; then
        case " $only " in *" $name "*) ;; *) return 0 ;; esac
    fi
    python3 $RECORD "$name" --timed . --script $S/$name.keys "$@" || echo "FAILED: $name" >&2
}

rec htop --quit q -- htop -d 5
rec top --quit q --version-cmd 'top -V' -- top -d 0.5
rec mc --quit '\e[21~' -- mc --nosubshell /usr/share
rec vim --quit '\e:qa!\r' --file $GPL -- vim GPL-3
rec less --quit q --file $GPL -- less GPL-3
rec dialog-gauge --quit '\e' --version-cmd 'dialog --version' -- \
    sh -c 'for i in $(seq 0 100); do echo $i; sleep 0.08; done | dialog --title Install --gauge "Copying files..." 10 60 0'
rec whiptail-menu --quit '\e' --version-cmd 'whiptail -v' -- whiptail --title 'Pick a country' \
    --menu 'Move through the list:' 20 60 12 $(for i in $(seq 1 30); do echo "$i" "Item-number-$i"; done)
rec clock --quit q --file clock.py --version-cmd 'python3 --version' -- python3 clock.py --seconds 10
