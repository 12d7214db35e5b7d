#!/bin/sh
# Wide characters, emoji and combining marks, including wraps at the last column.
printf 'CJK: 日本語のテキスト 中文字符 한국어 텍스트\n'
printf 'Fullwidth: ＡＢＣ１２３ half: ｱｲｳ\n'
printf 'Emoji: 😀 🎉 🐍 🚀 ✅ ❌ ⭐ ☕\n'
printf 'Combining: e\314\201 a\314\200 n\314\203 o\314\210 (decomposed) vs é à ñ ö\n'
printf 'Greek: αβγδε ΩΨΦ Cyrillic: Привет мир Arabic digits ٠١٢\n'
printf 'Symbols: → ← ↑ ↓ ⇒ ∀ ∃ ∈ ∞ ≠ ≤ ≥ √ ∑ ∫ ° ± × ÷\n'
printf 'Braille: ⠁⠃⠉⠙⠑⠋⠛⠓ blocks: ▀▄█▌▐░▒▓ ■□▪▫\n'
# 79 narrow then a wide one: it must wrap to the next line.
printf '%079d日\n' 0
printf '%078d日x\n' 0
# Wide characters filling a whole line.
printf '一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十\n'
# Overwrite the right half, then the left half of wide characters (not at
# column 0: tmux 3.3a leaves a wide character there when its right half is hit).
printf '> 漢字漢字漢字\r\033[3Cxz\033[9Gy\n'
printf 'end\n'
