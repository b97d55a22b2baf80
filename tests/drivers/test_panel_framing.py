"""Table-driven tests of the info-panel ASCII framing (bytes in, frames/typed errors out)."""

from __future__ import annotations

import pytest

from drivers.panel_framing import (
    ALL_FIELDS,
    MAX_FRAME,
    MSG_MAX_CHARS,
    BadChecksum,
    Command,
    Frame,
    FrameDecoder,
    FrameError,
    GarbageBytes,
    MalformedFrame,
    NakCode,
    OverlongFrame,
    TruncatedFrame,
    checksum,
    encode_frame,
    escape_value,
    nak_reply,
    parse_frame,
    read_reply,
    read_request,
    unescape_value,
    write_reply,
    write_request,
)


def _with_cs(start: bytes, body: bytes) -> bytes:
    return start + body + b"*%02X\r" % checksum(body)


# ------------------------------------------------------------------------------------------ encoding
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (read_request(1, ["MSG", "STATUS"]), b"@01RD MSG STATUS*FE\r"),
        (read_reply(1, {"MSG": "Hi", "STATUS": 0}), b"#01RD MSG=Hi STATUS=0*A3\r"),
        (read_request(7), _with_cs(b"@", b"07RD MSG STATUS BRIGHT")),
        (write_request(12, "Route barrée"), _with_cs(b"@", b"12WR MSG=Route\\20barr\\C3\\A9e")),
        (write_reply(12, ""), _with_cs(b"#", b"12WR MSG=")),
        (nak_reply(1, NakCode.READ_ONLY, "STATUS"), b"#01NK 03 STATUS*7F\r"),
        (nak_reply(99, NakCode.UNKNOWN_COMMAND), _with_cs(b"#", b"99NK 01")),
    ],
)
def test_encode(raw: bytes, expected: bytes) -> None:
    assert raw == expected
    assert (sum(raw[1:-4]) + int(raw[-3:-1], 16)) % 256 == 0  # LRC: body + cs ≡ 0


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("", ""),
        ("PLAIN", "PLAIN"),
        ("a b", "a\\20b"),
        ("x=1*2", "x\\3D1\\2A2"),
        ("@#\\", "\\40\\23\\5C"),
        ("line1\nline2\r", "line1\\0Aline2\\0D"),
        ("été", "\\C3\\A9t\\C3\\A9"),
        ("Tél. 03 80", "T\\C3\\A9l.\\2003\\2080"),
        ("€", "\\E2\\82\\AC"),
    ],
)
def test_escape_roundtrip(text: str, wire: str) -> None:
    assert escape_value(text) == wire
    assert unescape_value(wire) == text
    assert all(0x21 <= b <= 0x7E for b in wire.encode("ascii"))


@pytest.mark.parametrize("wire", ["a\\2", "a\\", "a\\GG", "a b", "a=b", "x*", "\\C3", "\\FF\\FF", "é"])
def test_unescape_rejects(wire: str) -> None:
    with pytest.raises(ValueError):
        unescape_value(wire)


@pytest.mark.parametrize(
    "frame",
    [
        Frame(False, 100, "RD"),
        Frame(False, -1, "RD"),
        Frame(False, 1, "rd"),
        Frame(False, 1, "READ"),
        Frame(False, 1, "RD", (("msg", None),)),
        Frame(False, 1, "RD", (("TOOLONGNAME", None),)),
        Frame(False, 1, "WR", (("MSG", "x" * MAX_FRAME),)),
    ],
)
def test_encode_rejects(frame: Frame) -> None:
    with pytest.raises(ValueError):
        encode_frame(frame)


def test_write_request_limits_message_length() -> None:
    write_request(1, "€" * MSG_MAX_CHARS)  # fully escaped worst case still fits in MAX_FRAME
    with pytest.raises(ValueError):
        write_request(1, "x" * (MSG_MAX_CHARS + 1))


# ------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"@01RD MSG STATUS*FE\r", Frame(False, 1, "RD", (("MSG", None), ("STATUS", None)))),
        (b"#01RD MSG=Hi STATUS=0*A3\r", Frame(True, 1, "RD", (("MSG", "Hi"), ("STATUS", "0")))),
        (b"#01RD MSG=Hi STATUS=0*a3\r", Frame(True, 1, "RD", (("MSG", "Hi"), ("STATUS", "0")))),  # lower-case hex
        (_with_cs(b"@", b"05RD"), Frame(False, 5, "RD")),
        (_with_cs(b"@", b"05ZZ"), Frame(False, 5, "ZZ")),  # unknown commands parse (the device NAKs them)
        (_with_cs(b"@", b"05WR MSG="), Frame(False, 5, "WR", (("MSG", ""),))),
        (_with_cs(b"@", b"05WR MSG=a\\20\\3Db"), Frame(False, 5, "WR", (("MSG", "a =b"),))),
        (_with_cs(b"#", b"05NK 04 MSG"), Frame(True, 5, "NK", (("04", None), ("MSG", None)))),
    ],
)
def test_parse(raw: bytes, expected: Frame) -> None:
    assert parse_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"@01RD MSG STATUS*FF\r", BadChecksum),
        (b"@01RD MSG STATUX*FE\r", BadChecksum),  # one corrupted byte
        (b"@01RD MSG STATUS\r", MalformedFrame),  # no checksum
        (b"@01RD MSG STATUS*F\r", MalformedFrame),
        (b"@01RD MSG STATUS*FG\r", MalformedFrame),
        (b"01RD*00\r", MalformedFrame),  # no start byte
        (b"@01RD*00", MalformedFrame),  # no CR
        (_with_cs(b"@", b"1RD"), MalformedFrame),
        (_with_cs(b"@", b"AARD"), MalformedFrame),
        (_with_cs(b"@", b"01rd"), MalformedFrame),
        (_with_cs(b"@", b"01RD msg"), MalformedFrame),
        (_with_cs(b"@", b"01RD MSG  STATUS"), MalformedFrame),  # empty item
        (_with_cs(b"@", b"01WR MSG=a\\2"), MalformedFrame),
        (_with_cs(b"@", b"01WR MSG=\\C3"), MalformedFrame),  # not UTF-8
        (_with_cs(b"@", b"01WR MSG=a\tb"), MalformedFrame),
        (_with_cs(b"@", b"01WR MSG=\xc3\xa9"), MalformedFrame),  # raw non-ASCII
        (_with_cs(b"@", b"01WR MSG=a=b"), MalformedFrame),
    ],
)
def test_parse_errors(raw: bytes, error: type[FrameError]) -> None:
    with pytest.raises(error) as info:
        parse_frame(raw)
    assert info.value.raw == raw


def test_bad_checksum_reports_both_values() -> None:
    with pytest.raises(BadChecksum) as info:
        parse_frame(b"@01RD MSG STATUS*FF\r")
    assert (info.value.expected, info.value.got) == (0xFE, 0xFF)


def test_frame_helpers() -> None:
    reply = parse_frame(read_reply(3, {"MSG": "Bonjour", "STATUS": 1, "BRIGHT": 80}))
    assert reply.is_reply and reply.addr == 3 and reply.command == Command.READ
    assert reply.names == ALL_FIELDS
    assert reply.value("MSG") == "Bonjour" and reply.value("NOPE") is None
    assert reply.typed_values() == {"MSG": "Bonjour", "STATUS": 1, "BRIGHT": 80}
    assert reply.nak is None
    nak = parse_frame(nak_reply(3, NakCode.BAD_VALUE, "MSG"))
    assert nak.nak is NakCode.BAD_VALUE and nak.nak_field == "MSG"
    assert parse_frame(_with_cs(b"#", b"03NK 77")).nak is None  # unknown code: still a refusal frame
    assert reply.encode() == read_reply(3, {"MSG": "Bonjour", "STATUS": 1, "BRIGHT": 80})


# ------------------------------------------------------------------------------------------- decoder
REQ = read_request(1)
REPLY = read_reply(2, {"MSG": "Accident A38", "STATUS": 0, "BRIGHT": 40})
F_REQ = parse_frame(REQ)
F_REPLY = parse_frame(REPLY)
BAD_CS = REQ[:-3] + b"00\r"


def _kinds(out: list[Frame | FrameError]) -> list[object]:
    return [x if isinstance(x, Frame) else type(x) for x in out]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([REQ], [F_REQ]),
        ([REQ + REPLY], [F_REQ, F_REPLY]),
        ([REQ[:1], REQ[1:7], REQ[7:]], [F_REQ]),  # split anywhere
        ([bytes([b]) for b in REQ + REPLY], [F_REQ, F_REPLY]),  # byte by byte
        ([REQ[:-1], REQ[-1:] + REPLY[:3], REPLY[3:]], [F_REQ, F_REPLY]),
        ([b"\x00\xffnoise" + REQ], [GarbageBytes, F_REQ]),
        ([b"no", b"ise", REQ], [GarbageBytes, F_REQ]),  # a garbage run is reported once
        ([REQ[:6] + REPLY], [TruncatedFrame, F_REPLY]),  # start byte before CR
        ([REQ[:6], REQ], [TruncatedFrame, F_REQ]),
        ([BAD_CS + REQ], [BadChecksum, F_REQ]),
        ([b"@01RD*ZZ\r" + REQ], [MalformedFrame, F_REQ]),
        ([REQ.replace(b"\r", b"\r\n") * 2], [F_REQ, F_REQ]),  # CRLF masters tolerated
        ([b"\r\n\r" + REQ], [F_REQ]),  # stray line ends between frames are not garbage
        ([b"@" + b"A" * MAX_FRAME + b"\r" + REQ], [OverlongFrame, F_REQ]),
        ([b"@" + b"A" * MAX_FRAME, b"more junk", REQ], [OverlongFrame, F_REQ]),  # skipped up to the next start
        ([b"@" + b"A" * (MAX_FRAME + 5) + b"\rjunk" + REQ], [OverlongFrame, GarbageBytes, F_REQ]),
        ([REQ[:5] + b"X" + REQ[5:]], [BadChecksum]),  # byte inserted in a frame: caught by the LRC
        ([REQ[:5] + b"\x00" + REQ[5:]], [MalformedFrame]),  # a NUL adds 0 to the LRC: caught by the grammar
        ([b"@01RD MSG STATUS*FE\r"[:-3] + b"FF\r"], [BadChecksum]),
    ],
)
def test_decoder(chunks: list[bytes], expected: list[object]) -> None:
    dec = FrameDecoder()
    out: list[Frame | FrameError] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    assert _kinds(out) == expected
    assert dec.pending == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (REQ[:8], [TruncatedFrame]),
        (b"junk", [GarbageBytes]),
        (REQ + b"junk", [GarbageBytes]),
        (b"", []),
    ],
)
def test_decoder_flush(data: bytes, expected: list[object]) -> None:
    dec = FrameDecoder()
    assert dec.feed(data) in ([], [F_REQ])
    assert dec.pending == (8 if expected == [TruncatedFrame] else 0)
    assert _kinds(list(dec.flush())) == expected
    assert dec.pending == 0
    assert dec.feed(REQ) == [F_REQ]  # usable after a flush


def test_decoder_error_carries_raw_bytes() -> None:
    dec = FrameDecoder()
    out = dec.feed(b"xy" + REQ[:4] + BAD_CS)
    assert out == [GarbageBytes(b"xy"), TruncatedFrame(REQ[:4]), BadChecksum(BAD_CS, 0, 0)]
    assert isinstance(out[2], BadChecksum) and out[2].got == 0


def test_every_single_byte_corruption_is_detected() -> None:
    """Flip each byte of a reply to each other printable value: the decoder never returns a wrong frame."""
    for i in range(1, len(REPLY) - 1):
        for value in range(0x20, 0x7F):
            if value == REPLY[i]:
                continue
            raw = REPLY[:i] + bytes([value]) + REPLY[i + 1 :]
            out = FrameDecoder().feed(raw)
            frames = [x for x in out if isinstance(x, Frame)]
            # only a case change of a checksum hex digit leaves the frame intact
            assert frames == [] or (frames == [F_REPLY] and raw.upper() == REPLY.upper()), (i, value, out)
