"""VNC Authentication: DES known answers, the bit-reversed key, the password file.

The known answers come from outside this code base:

- the FIPS 46 worked example for plain DES (key 133457799BBCDFF1);
- the scrambled form VNC software stores for a password ("password" ->
  dbd83cfd727a1458, TightVNC's registry and ~/.vnc/passwd), which is DES of the
  password under VNC's fixed key 23 82 107 6 35 78 88 7 with the VNC bit
  reversal, i.e. exactly what vnc_auth_response computes;
- challenge/response pairs captured with Wireshark between real VNC programs,
  published in mitchellh/go-vnc client_auth_test.go;
- vncdotool's own VNC key derivation, for random passwords and challenges.
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from pathlib import Path

import pytest
from cryptography.utils import CryptographyDeprecationWarning
from hypothesis import given, settings
from hypothesis import strategies as st

from vzvnc.errors import ConfigError
from vzvnc.rfb.auth import (
    CHALLENGE_SIZE,
    check_vnc_auth,
    make_challenge,
    read_password_file,
    vnc_auth_response,
    vnc_des_key,
)

# -- the key ------------------------------------------------------------------


def test_key_of_password_is_each_byte_bit_reversed() -> None:
    # Worked by hand: "p" = 0x70 = 0111_0000 -> 0000_1110 = 0x0e,
    # "a" = 0x61 = 0110_0001 -> 1000_0110 = 0x86, "s" = 0x73 = 0111_0011 -> 1100_1110 = 0xce,
    # "w" = 0x77 = 0111_0111 -> 1110_1110 = 0xee, "o" = 0x6f = 0110_1111 -> 1111_0110 = 0xf6,
    # "r" = 0x72 = 0111_0010 -> 0100_1110 = 0x4e, "d" = 0x64 = 0110_0100 -> 0010_0110 = 0x26.
    assert vnc_des_key(b"password") == bytes([0x0E, 0x86, 0xCE, 0xCE, 0xEE, 0xF6, 0x4E, 0x26])


def test_key_of_short_password_is_nul_padded() -> None:
    assert vnc_des_key(b"ab") == bytes([0x86, 0x46, 0, 0, 0, 0, 0, 0])
    assert vnc_des_key(b"") == bytes(8)


def test_key_of_long_password_uses_first_eight_bytes() -> None:
    assert vnc_des_key(b"password-and-more") == vnc_des_key(b"password")


def test_key_reversal_edge_bytes() -> None:
    assert vnc_des_key(bytes([0x01, 0x80, 0xFF, 0x0F, 0xF0, 0xAA, 0x55, 0x12])) == bytes(
        [0x80, 0x01, 0xFF, 0xF0, 0x0F, 0x55, 0xAA, 0x48]
    )


# -- known answers ------------------------------------------------------------


def _reverse_bits_by_hand(data: bytes) -> bytes:
    """A second, deliberately different, bit reversal: via strings of binary digits."""
    return bytes(int(format(byte, "08b")[::-1], 2) for byte in data)


def test_fips_des_worked_example_through_the_vnc_key() -> None:
    # FIPS 46 / the classic DES walk-through: key 133457799BBCDFF1 encrypts
    # 0123456789ABCDEF to 85E813540F0AB405.  Handing vnc_auth_response the key
    # with its bits pre-reversed makes VNC's reversal give back the plain key.
    des_key = bytes.fromhex("133457799BBCDFF1")
    plain = bytes.fromhex("0123456789ABCDEF")
    response = vnc_auth_response(_reverse_bits_by_hand(des_key), plain * 2)
    assert response.hex() == "85e813540f0ab405" * 2


# VNC's fixed key for the password files (vncauth.c), used as a "password".
_VNC_FIXED_KEY = bytes([23, 82, 107, 6, 35, 78, 88, 7])


@pytest.mark.parametrize(
    ("first", "first_hex", "second", "second_hex"),
    [
        (b"password", "dbd83cfd727a1458", b"bar", "9ca3f3686574f277"),
        (b"12345678", "f0e43164f6c2e373", b"abc", "9c0a172d3482e122"),
        (b"Secure!", "d7a514d8c556aade", b"P@ssw0rd", "317c13ddb544c6c7"),
    ],
)
def test_stored_vnc_password_forms(
    first: bytes, first_hex: str, second: bytes, second_hex: str
) -> None:
    # The "obfuscated" password VNC servers store is the NUL-padded password
    # encrypted under the fixed key exactly as a challenge would be.
    challenge = first.ljust(8, b"\0") + second.ljust(8, b"\0")
    assert vnc_auth_response(_VNC_FIXED_KEY, challenge).hex() == first_hex + second_hex


@pytest.mark.parametrize(
    ("password", "challenge", "response"),
    [
        (
            b".",
            "7f:e2:e1:3d:a4:ae:10:9c:54:c5:5f:52:74:aa:db:31",
            "1d:86:92:71:1f:00:24:35:02:d3:91:ef:e9:bc:c5:d5",
        ),
        (
            b"12345678",
            "13:8e:a4:2e:0e:66:f3:ad:2d:f3:08:c3:04:cd:c4:2a",
            "5b:e1:56:fa:49:49:ef:56:d3:f8:44:97:73:27:95:9f",
        ),
        (
            b"abc123",
            "c6:30:45:d2:57:9e:e7:f2:f9:0c:62:3e:52:40:86:c6",
            "a3:63:59:e4:28:c8:7f:b3:45:2c:d7:e0:ca:d6:70:3e",
        ),
    ],
)
def test_captured_challenge_response_pairs(password: bytes, challenge: str, response: str) -> None:
    challenge_bytes = bytes.fromhex(challenge.replace(":", ""))
    response_bytes = bytes.fromhex(response.replace(":", ""))
    assert vnc_auth_response(password, challenge_bytes) == response_bytes
    assert check_vnc_auth(password, challenge_bytes, response_bytes)
    wrong = password[:-1] + bytes([password[-1] ^ 1])
    assert not check_vnc_auth(wrong, challenge_bytes, response_bytes)


def _vncdotool_response(password: str, challenge: bytes) -> bytes:
    from vncdotool import rfb as vncdotool_rfb  # type: ignore[import-untyped]

    # vncdotool 1.4.2 builds its key itself (reverse_bits, its own padding)
    # and reaches DES through cryptography's deprecated non-decrepit TripleDES:
    # silence exactly that warning, only here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=CryptographyDeprecationWarning)
        key = vncdotool_rfb._vnc_des(password)
        response: bytes = vncdotool_rfb.des_encrypt(key, challenge)
    return response


@settings(max_examples=60, deadline=None)
@given(
    password=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12),
    challenge=st.binary(min_size=CHALLENGE_SIZE, max_size=CHALLENGE_SIZE),
)
def test_agrees_with_vncdotool(password: str, challenge: bytes) -> None:
    expected = _vncdotool_response(password, challenge)
    assert vnc_auth_response(password.encode("ascii"), challenge) == expected


# -- checking -----------------------------------------------------------------


def test_right_password_accepted_wrong_refused() -> None:
    challenge = make_challenge()
    response = vnc_auth_response(b"secret", challenge)
    assert check_vnc_auth(b"secret", challenge, response)
    assert not check_vnc_auth(b"secreT", challenge, response)
    assert not check_vnc_auth(b"secret", make_challenge(), response)
    flipped = bytes([response[0] ^ 1]) + response[1:]
    assert not check_vnc_auth(b"secret", challenge, flipped)
    last_flipped = response[:-1] + bytes([response[-1] ^ 0x80])
    assert not check_vnc_auth(b"secret", challenge, last_flipped)


def test_passwords_agreeing_in_eight_bytes_are_the_same_to_vnc() -> None:
    challenge = make_challenge()
    response = vnc_auth_response(b"12345678", challenge)
    assert vnc_auth_response(b"12345678abc", challenge) == response
    assert check_vnc_auth(b"12345678zzz", challenge, response)
    assert not check_vnc_auth(b"1234567", challenge, response)


def test_short_password_is_nul_padded_not_repeated() -> None:
    challenge = bytes(range(16))
    assert vnc_auth_response(b"ab", challenge) == vnc_auth_response(b"ab\0\0\0\0\0\0", challenge)
    assert vnc_auth_response(b"ab", challenge) != vnc_auth_response(b"abab", challenge)


@pytest.mark.parametrize("length", [0, 1, 8, 15, 17, 32])
def test_check_refuses_wrong_lengths(length: int) -> None:
    challenge = bytes(range(16))
    response = vnc_auth_response(b"pw", challenge)
    assert not check_vnc_auth(b"pw", challenge, response[:length] + bytes(max(0, length - 16)))
    assert not check_vnc_auth(b"pw", bytes(length), response)


def test_check_refuses_response_with_extra_bytes() -> None:
    challenge = bytes(range(16))
    response = vnc_auth_response(b"pw", challenge)
    assert not check_vnc_auth(b"pw", challenge, response + b"\0")


@pytest.mark.parametrize("length", [0, 8, 15, 17, 24])
def test_response_needs_a_sixteen_byte_challenge(length: int) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        vnc_auth_response(b"pw", bytes(length))


def test_challenges_are_sixteen_fresh_bytes() -> None:
    challenges = {make_challenge() for _ in range(64)}
    assert len(challenges) == 64
    assert all(len(c) == CHALLENGE_SIZE == 16 for c in challenges)


# -- the password file --------------------------------------------------------

_SECRET = "hunter2x"


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _assert_secret_not_logged(caplog: pytest.LogCaptureFixture, secret: str = _SECRET) -> None:
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.args)


def test_reads_first_line_without_newline(tmp_path: Path) -> None:
    path = _write(tmp_path / "pw", f"{_SECRET}\nsecond line\n".encode())
    assert read_password_file(path) == _SECRET.encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"abc", b"abc"),
        (b"abc\n", b"abc"),
        (b"abc\r\n", b"abc"),
        (b"a b \n", b"a b "),
        (b"\xc3\xa9t\xc3\xa9\n", b"\xc3\xa9t\xc3\xa9"),
    ],
)
def test_line_endings_and_bytes_kept(tmp_path: Path, data: bytes, expected: bytes) -> None:
    assert read_password_file(str(_write(tmp_path / "pw", data))) == expected


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError, match=r"nope.*does not exist"):
        read_password_file(path)


@pytest.mark.parametrize("data", [b"", b"\n", b"\r\n", b"\nsecret\n"])
def test_empty_first_line_refused(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(ConfigError, match=r"pw.*empty"):
        read_password_file(_write(tmp_path / "pw", data))


def test_nul_in_password_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NUL"):
        read_password_file(_write(tmp_path / "pw", b"ab\0cd\n"))


def test_too_big_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "big", b"pw\n" + b"x" * 4096)
    with pytest.raises(ConfigError, match=r"big.*larger than 4096"):
        read_password_file(path)


def test_exactly_the_limit_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path / "pw", b"pw\n" + b"x" * (4096 - 3))
    assert read_password_file(path) == b"pw"


def test_directory_refused(tmp_path: Path) -> None:
    directory = tmp_path / "pwdir"
    directory.mkdir()
    with pytest.raises(ConfigError, match=r"pwdir.*not a regular file"):
        read_password_file(directory)


def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match=r"fifo.*not a regular file"):
        read_password_file(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "locked", b"pw\n", mode=0)
    with pytest.raises(ConfigError, match=r"locked.*not readable"):
        read_password_file(path)


def test_unopenable_path_refused(tmp_path: Path) -> None:
    # A regular file used as a directory: an OSError that is neither "missing"
    # nor "permission denied" (and can be provoked as root too).
    plain = _write(tmp_path / "plain", b"pw\n")
    with pytest.raises(ConfigError, match=r"plain/pw.*cannot be opened"):
        read_password_file(plain / "pw")


def test_symlink_to_password_file_followed(tmp_path: Path) -> None:
    # Secrets are often mounted as symlinks (Kubernetes, systemd credentials).
    target = _write(tmp_path / "target", b"linked\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_password_file(link) == b"linked"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_shared_file_warns_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    path = _write(tmp_path / "pw", f"{_SECRET}\n".encode(), mode=mode)
    with caplog.at_level(logging.DEBUG, logger="vzvnc.rfb.auth"):
        assert read_password_file(path) == _SECRET.encode()
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1
    message = warnings_logged[0].getMessage()
    assert str(path) in message
    assert oct(stat.S_IMODE(mode))[2:] in message
    _assert_secret_not_logged(caplog)


def test_private_file_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path / "pw", f"{_SECRET}\n".encode(), mode=0o600)
    with caplog.at_level(logging.DEBUG, logger="vzvnc.rfb.auth"):
        read_password_file(path)
    assert caplog.records == []


def test_long_password_warns_once_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "longer-than-eight-bytes"
    path = _write(tmp_path / "pw", f"{secret}\n".encode())
    with caplog.at_level(logging.DEBUG, logger="vzvnc.rfb.auth"):
        password = read_password_file(path)
    # The whole line comes back; the truncation happens in the key.
    assert password == secret.encode()
    warnings_logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_logged) == 1
    assert "first 8" in warnings_logged[0].getMessage()
    _assert_secret_not_logged(caplog, secret)
    _assert_secret_not_logged(caplog, secret[:8])


def test_errors_never_contain_the_password(tmp_path: Path) -> None:
    for name, data in [("nul", f"{_SECRET}\0\n"), ("big", _SECRET * 1000)]:
        with pytest.raises(ConfigError) as info:
            read_password_file(_write(tmp_path / name, data.encode()))
        assert _SECRET not in str(info.value)
        assert info.value.exit_code == os.EX_CONFIG


def test_a_console_without_a_password_never_loads_cryptography() -> None:
    """DES is loaded on the first VNC Authentication, not with the server: 1.5 MB saved
    in every console process that has no password."""
    import subprocess
    import sys

    code = (
        "import sys, vzvnc.cli, vzvnc.console, vzvnc.domain.console_server\n"
        "assert 'cryptography' not in sys.modules, 'loaded at import'\n"
        "from vzvnc.rfb.auth import vnc_auth_response\n"
        "vnc_auth_response(b'pw', bytes(16))\n"
        "assert 'cryptography' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
