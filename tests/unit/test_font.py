"""Bitmap font parsing, the shipped Unifont, and the glyph atlas's drawing rules."""

from __future__ import annotations

import importlib.resources

import numpy as np
import numpy.typing as npt
import pytest

from vzvnc.fb.font import (
    BOLD,
    ITALIC,
    STRIKE,
    STYLE_MASK,
    UNDERLINE,
    BitmapFont,
    GlyphAtlas,
    default_atlas,
)
from vzvnc.term.cells import (
    ATTR_BLINK,
    ATTR_BOLD,
    ATTR_DIM,
    ATTR_INVISIBLE,
    ATTR_ITALIC,
    ATTR_REVERSE,
    ATTR_STRIKE,
    ATTR_UNDERLINE,
    ATTR_WIDE_LEFT,
    ATTR_WIDE_RIGHT,
)

Mask = npt.NDArray[np.bool_]


def picture(*rows: str) -> Mask:
    """A bool array drawn with '#' (set) and '.' (clear), one string per row."""
    return np.array([[c == "#" for c in row] for row in rows], dtype=np.bool_)


def show(mask: Mask) -> str:
    return "\n".join("".join("#" if v else "." for v in row) for row in mask)


def lookup(atlas: GlyphAtlas, cp: int, attrs: int = 0) -> Mask:
    rows = atlas.indices(np.array([cp], dtype=np.uint32), np.array([attrs], dtype=np.uint16))
    mask: Mask = atlas.masks[rows[0]]
    return mask


# Unifont's capital A, as in unifont.hex 15.0.01.
A_HEX = "0041:0000000018242442427E424242420000"
A_PICTURE = picture(
    "........",
    "........",
    "........",
    "........",
    "...##...",
    "..#..#..",
    "..#..#..",
    ".#....#.",
    ".#....#.",
    ".######.",
    ".#....#.",
    ".#....#.",
    ".#....#.",
    ".#....#.",
    "........",
    "........",
)

# A 16x16 test glyph: row 0 checks nibble and byte order, then a staircase.
WIDE_HEX = "E000:01238001E000F000F800FC00FE00FF00FF80FFC0FFE0FFF0FFF8FFFCFFFEFFFF"
WIDE_PICTURE = picture(
    ".......#..#...##",
    "#..............#",
    "###.............",
    "####............",
    "#####...........",
    "######..........",
    "#######.........",
    "########........",
    "#########.......",
    "##########......",
    "###########.....",
    "############....",
    "#############...",
    "##############..",
    "###############.",
    "################",
)


# --- parsing -----------------------------------------------------------------


def test_from_hex_decodes_8x16_bit_exactly() -> None:
    font = BitmapFont.from_hex(A_HEX + "\n")
    assert (font.cell_width, font.cell_height) == (8, 16)
    assert font.has_glyph(0x41)
    glyph = font.glyph(0x41)
    assert glyph.dtype == np.bool_
    assert glyph.shape == (16, 8)
    assert np.array_equal(glyph, A_PICTURE), show(glyph)


def test_from_hex_decodes_16x16_bit_exactly() -> None:
    font = BitmapFont.from_hex(WIDE_HEX)  # no final newline
    glyph = font.glyph(0xE000)
    assert glyph.shape == (16, 16)
    assert np.array_equal(glyph, WIDE_PICTURE), show(glyph)
    assert font.glyph_width(0xE000) == 16
    assert font.glyph_width(0x41) == 8  # missing: the 8-wide box


def test_from_hex_accepts_lowercase_crlf_blank_lines_and_any_order() -> None:
    text = "\r\n".join(
        [
            "10ffff:ffffffffffffffffffffffffffffffff",
            "",
            A_HEX.lower(),
            "42:0000000000000000000000000000000f",
            "",
        ]
    )
    font = BitmapFont.from_hex(text)
    assert len(font) == 3
    assert np.array_equal(font.glyph(0x41), A_PICTURE)
    assert font.glyph(0x10FFFF).all()
    assert np.array_equal(font.glyph(0x42)[15], picture("....####")[0])
    assert not font.glyph(0x42)[:15].any()
    assert not font.has_glyph(0x43)


GOOD = "0030:00000000182442464A52624224180000"


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("00410000000018242442427E424242420000", "':'"),
        ("0041:00000000:18242442427E424242420000", "':'"),
        ("0041:0000000018242442427E42424242000", "not 31"),
        ("0041:0000000018242442427E4242424200000", "not 33"),
        (":0000000018242442427E424242420000", "code point"),
        ("1000041:0000000018242442427E424242420000", "code point"),
        ("00G1:0000000018242442427E424242420000", "code point"),
        ("0041:0000000018242442427E42424242000G", "hex digits"),
        ("0041 :0000000018242442427E424242420000", "code point"),
        ("0041:0000000018242442427E424242420000 ", "hex digits"),
        ("0041:0000000018242442427E4242424200\u00e9", "hex digits"),
        (" ", "':'"),
        ("110000:0000000018242442427E424242420000", "beyond U+10FFFF"),
        ("0030:0000000018242442427E424242420000", "U+0030 already defined on line 1"),
    ],
)
def test_from_hex_refuses_malformed_line_naming_its_number(bad_line: str, reason: str) -> None:
    text = "\n".join([GOOD, "", "0031:000000000818280808080808083E0000", bad_line, GOOD[:4] + "9"])
    # The last line is bad too (too short): the first bad line must be named.
    with pytest.raises(ValueError, match=r"^font line 4: ") as caught:
        BitmapFont.from_hex(text)
    assert reason in str(caught.value)


def test_from_hex_of_nothing_is_an_empty_font() -> None:
    font = BitmapFont.from_hex("")
    assert len(font) == 0
    assert np.array_equal(font.glyph(0x41), BitmapFont.from_hex("\n").glyph(0x42))


# --- the shipped font ----------------------------------------------------------


def test_font_files_are_shipped_in_the_package() -> None:
    fonts = importlib.resources.files("vzvnc.fonts")
    for name in ("unifont.hex", "LICENSE.unifont", "README.md"):
        assert fonts.joinpath(name).is_file(), name
    assert "GNU GENERAL PUBLIC LICENSE" in fonts.joinpath("LICENSE.unifont").read_text()


def test_default_font_is_loaded_once() -> None:
    font = BitmapFont.default()
    assert font is BitmapFont.default()
    assert (font.cell_width, font.cell_height) == (8, 16)
    assert len(font) > 50_000


def test_default_font_capital_a_is_unifonts() -> None:
    font = BitmapFont.default()
    a, b = font.glyph(ord("A")), font.glyph(ord("B"))
    assert a.any()
    assert np.array_equal(a, A_PICTURE), show(a)
    assert not np.array_equal(a, b)


SCRIPTS = {
    "ASCII": range(0x21, 0x7F),
    "Latin-1": range(0xA1, 0x100),
    "Greek": [*range(0x391, 0x3A2), *range(0x3A3, 0x3AA), *range(0x3B1, 0x3CA)],
    "Cyrillic": range(0x400, 0x500),
    "box drawing": range(0x2500, 0x2580),
    "block elements": range(0x2580, 0x25A0),
    "Braille": range(0x2801, 0x2900),
    "CJK": [0x4E00, 0x4E2D, 0x6587, 0x9FA5],
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_default_font_covers_script(script: str) -> None:
    font = BitmapFont.default()
    box = font.glyph(0x10FFFD)
    for cp in SCRIPTS[script]:
        assert font.has_glyph(cp), f"U+{cp:04X}"
        glyph = font.glyph(cp)
        assert glyph.any(), f"U+{cp:04X} is blank"
        assert glyph.shape[1] != box.shape[1] or not np.array_equal(glyph, box), f"U+{cp:04X}"


def test_default_font_cjk_is_wide_and_latin_narrow() -> None:
    font = BitmapFont.default()
    assert font.glyph(0x4E2D).shape == (16, 16)
    assert font.glyph_width(0x4E2D) == 16
    assert font.glyph(ord("x")).shape == (16, 8)
    # U+4E2D: a box crossed by a vertical stroke through columns 7 and 8.
    assert font.glyph(0x4E2D)[:, 7].all()


@pytest.mark.parametrize("cp", [0x10FFFD, 0xE000, 0xD800, 0x110000, 0xFFFFFFFF, -1])
def test_missing_code_point_is_a_visible_box(cp: int) -> None:
    font = BitmapFont.default()
    assert not font.has_glyph(cp)
    glyph = font.glyph(cp)
    assert glyph.shape == (16, 8)
    assert glyph.any()
    # An outline: border pixels set, inside clear.
    rows, cols = np.nonzero(glyph)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    assert glyph[top, left : right + 1].all() and glyph[bottom, left : right + 1].all()
    assert glyph[top : bottom + 1, left].all() and glyph[top : bottom + 1, right].all()
    assert not glyph[top + 1 : bottom, left + 1 : right].any()


def test_space_is_blank_even_if_the_font_draws_it() -> None:
    assert not BitmapFont.default().glyph(0x20).any()
    assert not BitmapFont.from_hex("0020:" + "F" * 32).glyph(0x20).any()
    assert not BitmapFont.from_hex(A_HEX).glyph(0x20).any()


def test_glyph_returns_a_fresh_array() -> None:
    font = BitmapFont.from_hex(A_HEX)
    font.glyph(0x41)[:] = True
    font.glyph(0x99)[:] = True
    assert np.array_equal(font.glyph(0x41), A_PICTURE)
    assert not font.glyph(0x99).all()


# --- the atlas -------------------------------------------------------------------


def test_style_bits_are_the_cell_attribute_bits() -> None:
    assert (BOLD, ITALIC, UNDERLINE, STRIKE) == (
        ATTR_BOLD,
        ATTR_ITALIC,
        ATTR_UNDERLINE,
        ATTR_STRIKE,
    )
    assert STYLE_MASK == ATTR_BOLD | ATTR_ITALIC | ATTR_UNDERLINE | ATTR_STRIKE


def test_default_atlas_is_shared() -> None:
    atlas = default_atlas()
    assert atlas is default_atlas()
    assert atlas.font is BitmapFont.default()
    assert (atlas.cell_width, atlas.cell_height) == (8, 16)


def test_row_zero_is_blank_and_space_maps_to_it() -> None:
    atlas = GlyphAtlas(BitmapFont.default())
    assert not atlas.masks[0].any()
    rows = atlas.indices(np.array([0x20, 0, 0x20], np.uint32), np.array([0, 0, 0], np.uint16))
    assert rows.tolist() == [0, 0, 0]


def test_indices_keeps_shape_and_dtype() -> None:
    atlas = GlyphAtlas(BitmapFont.default())
    chars = np.full((2, 3, 4), ord("a"), dtype=np.uint32)
    rows = atlas.indices(chars, np.zeros((2, 3, 4), np.uint16))
    assert rows.shape == (2, 3, 4)
    assert rows.dtype == np.int32
    assert atlas.masks.shape[1:] == (16, 8)
    with pytest.raises(ValueError, match="shape"):
        atlas.indices(chars, np.zeros((2, 3), np.uint16))


def test_wide_pair_gets_the_two_halves_of_a_wide_glyph() -> None:
    font = BitmapFont.default()
    atlas = GlyphAtlas(font)
    chars = np.array([[0x41, 0x4E2D, 0x4E2D, 0x42]], dtype=np.uint32)
    attrs = np.array([[0, ATTR_WIDE_LEFT, ATTR_WIDE_RIGHT, 0]], dtype=np.uint16)
    rows = atlas.indices(chars, attrs)
    wide = font.glyph(0x4E2D)
    assert np.array_equal(atlas.masks[rows[0, 1]], wide[:, :8])
    assert np.array_equal(atlas.masks[rows[0, 2]], wide[:, 8:])
    assert np.array_equal(atlas.masks[rows[0, 0]], font.glyph(0x41))
    assert len(set(rows.ravel().tolist())) == 4


def test_wide_halves_with_a_hand_made_glyph() -> None:
    atlas = GlyphAtlas(BitmapFont.from_hex(WIDE_HEX))
    left = lookup(atlas, 0xE000, ATTR_WIDE_LEFT)
    right = lookup(atlas, 0xE000, ATTR_WIDE_RIGHT)
    assert np.array_equal(np.hstack([left, right]), WIDE_PICTURE)


def test_narrow_glyph_in_a_wide_pair_is_centred_across_it() -> None:
    atlas = GlyphAtlas(BitmapFont.from_hex(A_HEX))
    left = lookup(atlas, 0x41, ATTR_WIDE_LEFT)
    right = lookup(atlas, 0x41, ATTR_WIDE_RIGHT)
    expected = np.zeros((16, 16), dtype=np.bool_)
    expected[:, 4:12] = A_PICTURE
    assert np.array_equal(np.hstack([left, right]), expected)


def test_wide_glyph_in_a_narrow_cell_shows_its_left_half() -> None:
    atlas = GlyphAtlas(BitmapFont.from_hex(WIDE_HEX))
    assert np.array_equal(lookup(atlas, 0xE000), WIDE_PICTURE[:, :8])


def test_both_wide_bits_count_as_left() -> None:
    atlas = GlyphAtlas(BitmapFont.from_hex(WIDE_HEX))
    both = lookup(atlas, 0xE000, ATTR_WIDE_LEFT | ATTR_WIDE_RIGHT)
    assert np.array_equal(both, WIDE_PICTURE[:, :8])


def test_same_key_same_row_and_colour_attributes_ignored() -> None:
    atlas = GlyphAtlas(BitmapFont.default())
    ignored = ATTR_DIM | ATTR_BLINK | ATTR_REVERSE | ATTR_INVISIBLE
    chars = np.array([0x61, 0x62, 0x61, 0x61, 0x61, 0x62], dtype=np.uint32)
    attrs = np.array([0, 0, 0, ignored, BOLD, BOLD | ignored], dtype=np.uint16)
    rows = atlas.indices(chars, attrs)
    assert rows[0] == rows[2] == rows[3]
    assert len({rows[0], rows[1], rows[4], rows[5]}) == 4
    again = atlas.indices(chars[::-1].copy(), attrs[::-1].copy())
    assert again.tolist() == rows[::-1].tolist()


def test_missing_code_points_share_one_box() -> None:
    font = BitmapFont.default()
    atlas = GlyphAtlas(font)
    rows = atlas.indices(
        np.array([0xE000, 0xE001, 0x10FFFD, 0xFFFFFFFF], np.uint32), np.zeros(4, np.uint16)
    )
    assert len(set(rows.tolist())) == 1
    assert np.array_equal(atlas.masks[rows[0]], font.glyph(0xE000))
    assert atlas.masks[rows[0]].any()


def test_bold_adds_the_glyph_shifted_right_by_one_pixel() -> None:
    atlas = GlyphAtlas(BitmapFont.from_hex(A_HEX))
    regular, bold = lookup(atlas, 0x41), lookup(atlas, 0x41, BOLD)
    assert bold.sum() >= regular.sum()
    assert not (regular & ~bold).any()
    assert np.array_equal(
        bold,
        picture(
            "........",
            "........",
            "........",
            "........",
            "...###..",
            "..##.##.",
            "..##.##.",
            ".##...##",
            ".##...##",
            ".#######",
            ".##...##",
            ".##...##",
            ".##...##",
            ".##...##",
            "........",
            "........",
        ),
    ), show(bold)


def test_bold_crosses_from_the_left_half_of_a_wide_glyph_into_the_right() -> None:
    # Column 7 is set in every row of this glyph, column 8 in none.
    atlas = GlyphAtlas(BitmapFont.from_hex("E001:" + "0100" * 16))
    right = lookup(atlas, 0xE001, ATTR_WIDE_RIGHT | BOLD)
    assert right[:, 0].all()
    assert not right[:, 1:].any()
    assert not lookup(atlas, 0xE001, ATTR_WIDE_RIGHT).any()


def test_bold_has_at_least_as_many_pixels_everywhere() -> None:
    font = BitmapFont.default()
    atlas = GlyphAtlas(font)
    cps = np.array([*range(0x21, 0x7F), 0x2500, 0x2588, 0x4E2D], dtype=np.uint32)
    regular = atlas.indices(cps, np.zeros(cps.size, np.uint16))
    bold = atlas.indices(cps, np.full(cps.size, BOLD, np.uint16))
    masks = atlas.masks
    assert (masks[bold].sum(axis=(1, 2)) >= masks[regular].sum(axis=(1, 2))).all()


def test_italic_slants_the_upper_rows_right_and_descenders_left() -> None:
    font = BitmapFont.default()
    atlas = GlyphAtlas(font)
    for ch in "l|":
        assert not np.array_equal(lookup(atlas, ord(ch), ITALIC), font.glyph(ord(ch))), ch
    bar = lookup(atlas, ord("|"), ITALIC)
    assert np.array_equal(
        bar,
        picture(
            "........",
            "........",
            "......#.",
            "......#.",
            ".....#..",
            ".....#..",
            ".....#..",
            ".....#..",
            ".....#..",
            "....#...",
            "....#...",
            "....#...",
            "....#...",
            "....#...",
            "...#....",
            "...#....",
        ),
    ), show(bar)


def test_underline_and_strike_rows() -> None:
    atlas = GlyphAtlas(BitmapFont.default())
    plain = lookup(atlas, ord("x"))
    underlined = lookup(atlas, ord("x"), UNDERLINE)
    struck = lookup(atlas, ord("x"), STRIKE)
    assert underlined[14].all()
    assert struck[9].all()
    assert np.array_equal(np.delete(underlined, 14, axis=0), np.delete(plain, 14, axis=0))
    assert np.array_equal(np.delete(struck, 9, axis=0), np.delete(plain, 9, axis=0))
    # A styled space is not the blank row: the line must show.
    space = lookup(atlas, 0x20, UNDERLINE | STRIKE)
    assert space[14].all() and space[9].all() and space.sum() == 16


def test_lines_stay_straight_under_italic_and_span_a_wide_pair() -> None:
    atlas = GlyphAtlas(BitmapFont.default())
    style = ITALIC | UNDERLINE | STRIKE
    left = lookup(atlas, 0x4E2D, ATTR_WIDE_LEFT | style)
    right = lookup(atlas, 0x4E2D, ATTR_WIDE_RIGHT | style)
    for row in (9, 14):
        assert left[row].all() and right[row].all()


def random_screen(seed: int) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint16]]:
    rng = np.random.default_rng(seed)
    pool = np.array(
        [
            *(0, 0x20, 0xE9, 0x3A9, 0x416, 0x2502, 0x2588, 0x28FF),
            *range(0x21, 0x7F, 3),
            *(0xE000, 0x4E2D, 0x6587, 0x10FFFD),
        ],
        dtype=np.uint32,
    )
    chars = rng.choice(pool, size=(25, 80)).astype(np.uint32)
    attrs = rng.integers(0, 1 << 10, size=(25, 80)).astype(np.uint16)
    return chars, attrs


def test_indices_on_a_screen_equals_cell_by_cell_lookups() -> None:
    font = BitmapFont.default()
    chars, attrs = random_screen(1)
    atlas = GlyphAtlas(font)
    rows = atlas.indices(chars, attrs)
    masks = atlas.masks
    # A second atlas fed one cell at a time, in another order, draws the same.
    single = GlyphAtlas(font)
    for y in range(chars.shape[0] - 1, -1, -1):
        for x in range(chars.shape[1]):
            one = single.indices(chars[y : y + 1, x : x + 1], attrs[y : y + 1, x : x + 1])
            assert one.shape == (1, 1)
            assert np.array_equal(single.masks[one[0, 0]], masks[rows[y, x]]), (y, x)
            again = atlas.indices(chars[y : y + 1, x : x + 1], attrs[y : y + 1, x : x + 1])
            assert again[0, 0] == rows[y, x]


def test_growth_keeps_earlier_rows_intact() -> None:
    font = BitmapFont.default()
    atlas = GlyphAtlas(font)
    first_chars = np.arange(0x21, 0x7F, dtype=np.uint32)
    first = atlas.indices(first_chars, np.zeros(first_chars.size, np.uint16))
    before = atlas.masks.copy()
    old_masks = atlas.masks
    many = np.arange(0x4E00, 0x4E00 + 2000, dtype=np.uint32)
    atlas.indices(many, np.full(many.size, ATTR_WIDE_LEFT, np.uint16))
    assert atlas.masks.shape[0] > 2000
    assert atlas.generation == 0
    assert np.array_equal(atlas.masks[: before.shape[0]], before)
    assert np.array_equal(old_masks, before)  # what a caller still holds is unchanged
    again = atlas.indices(first_chars, np.zeros(first_chars.size, np.uint16))
    assert again.tolist() == first.tolist()


def test_atlas_starts_over_at_its_bound() -> None:
    font = BitmapFont.default()
    atlas = GlyphAtlas(font, max_keys=50)
    reference = GlyphAtlas(font)
    for start in range(0x4E00, 0x4E00 + 400, 40):
        chars = np.arange(start, start + 40, dtype=np.uint32)
        attrs = np.zeros(chars.size, np.uint16)
        rows = atlas.indices(chars, attrs)
        assert atlas.masks.shape[0] <= 50 + 1
        expected = reference.indices(chars, attrs)
        assert np.array_equal(atlas.masks[rows], reference.masks[expected])
    assert atlas.generation >= 5
    # One call needing more keys than the bound still gets all of them.
    chars = np.arange(0x21, 0x21 + 90, dtype=np.uint32)
    rows = atlas.indices(chars, np.zeros(chars.size, np.uint16))
    assert len(set(rows.tolist())) == 90
    assert np.array_equal(atlas.masks[rows[32]], font.glyph(0x21 + 32))


def test_the_installed_font_is_mapped_not_copied() -> None:
    """Every console maps the same file pages; a private copy cost 3.7 MB a process."""
    import mmap

    font = BitmapFont.default()
    assert isinstance(font._data, mmap.mmap)
    assert font.glyph(ord("A")).any()
