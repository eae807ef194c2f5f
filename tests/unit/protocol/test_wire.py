"""protocol.wire: canonical msgpack, the only encoding p2pnet signs, hashes or sends."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings

from protocol import LocalProtocolError, RemoteProtocolError, wire
from tests.strategies import canonical_values

LIMIT = 1 << 16


def _decode(data: bytes) -> Any:
    return wire.decode(data, max_size=LIMIT)


def _nested(levels: int) -> Any:
    """``levels`` arrays inside each other, the innermost empty."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


class TestRoundTrip:
    @settings(max_examples=300)
    @given(value=canonical_values(max_depth=4))
    def test_decode_inverts_encode(self, value: Any) -> None:
        data = wire.encode(value)
        decoded = _decode(data)
        assert decoded == value
        # == would accept True for 1 and 1 for True: compare encodings as well.
        assert wire.encode(decoded) == data

    @pytest.mark.parametrize(
        "value",
        [
            0,
            -1,
            127,
            128,
            -32,
            -33,
            255,
            256,
            65535,
            65536,
            (1 << 32) - 1,
            1 << 32,
            (1 << 64) - 1,
            -(1 << 63),
            "",
            "x" * 31,
            "x" * 32,
            "x" * 255,
            "x" * 256,
            "ﺭ€😀",
            b"",
            b"x" * 255,
            b"x" * 256,
            b"x" * 65536,
            [],
            {},
            None,
            True,
            False,
        ],
        ids=lambda v: repr(v)[:24],
    )
    def test_boundaries(self, value: Any) -> None:
        data = wire.encode(value)
        assert data == msgpack.packb(value, use_bin_type=True)
        decoded = wire.decode(data, max_size=len(data))
        assert decoded == value
        assert type(decoded) is type(value)

    def test_known_encodings(self) -> None:
        assert wire.encode({"b": 1, "a": 2}) == b"\x82\xa1a\x02\xa1b\x01"
        assert wire.encode(b"x") == b"\xc4\x01x"
        assert wire.encode("x") == b"\xa1x"
        assert wire.encode(5) == b"\x05"
        assert wire.encode((1, 2)) == wire.encode([1, 2]) == b"\x92\x01\x02"

    def test_map_keys_are_sorted_whatever_the_insertion_order(self) -> None:
        forwards = {"a": 1, "b": {"x": 1, "y": 2}, "c": 3}
        backwards = {"c": 3, "b": {"y": 2, "x": 1}, "a": 1}
        assert wire.encode(forwards) == wire.encode(backwards)
        assert list(_decode(wire.encode(backwards))) == ["a", "b", "c"]

    def test_keys_sort_by_code_point(self) -> None:
        data = wire.encode({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5})
        assert list(_decode(data)) == ["Z", "a", "aa", "z", "é"]


class TestEncodeRejects:
    @pytest.mark.parametrize(
        "value",
        [
            1.5,
            float("nan"),
            [0.0],
            {"a": 1.0},
            {b"a": 1},
            {1: 1},
            {None: 1},
            {"a": {2: 3}},
            {1, 2},
            bytearray(b"x"),
            object(),
            1 << 64,
            -(1 << 63) - 1,
            [1 << 70],
            "\ud800",
            {"\udcff": 1},
        ],
        ids=repr,
    )
    def test_values_without_a_canonical_form(self, value: Any) -> None:
        with pytest.raises(LocalProtocolError):
            wire.encode(value)

    def test_local_protocol_error_is_value_error(self) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the builtin base is the point
            wire.encode(1.5)


class TestDepthLimit:
    def test_max_depth_round_trips(self) -> None:
        value = _nested(wire.MAX_DEPTH)
        assert _decode(wire.encode(value)) == value
        in_a_map = {"a": _nested(wire.MAX_DEPTH - 1)}
        assert _decode(wire.encode(in_a_map)) == in_a_map

    def test_encode_and_decode_agree_on_the_limit(self) -> None:
        # "decode accepts exactly what encode produces": whatever encode accepts must
        # decode, and what decode refuses for depth encode must refuse too.
        for levels in range(1, wire.MAX_DEPTH + 4):
            value = _nested(levels)
            try:
                data = wire.encode(value)
            except LocalProtocolError:
                accepted_by_encode = False
            else:
                accepted_by_encode = True
                assert _decode(data) == value, f"{levels} levels"
            if not accepted_by_encode:
                hand_made = b"\x91" * (levels - 1) + b"\x90"
                with pytest.raises(RemoteProtocolError):
                    _decode(hand_made)

    def test_one_level_too_deep_is_refused_both_ways(self) -> None:
        too_deep = _nested(wire.MAX_DEPTH + 1)
        with pytest.raises(LocalProtocolError):
            wire.encode(too_deep)
        with pytest.raises(RemoteProtocolError):
            _decode(msgpack.packb(too_deep))

    def test_very_deep_input_is_a_protocol_error(self) -> None:
        for levels in (wire.MAX_DEPTH + 1, 100, 5000, 50_000):
            with pytest.raises(RemoteProtocolError):
                _decode(b"\x91" * levels + b"\xc0")
        # unpack has no depth limit of its own, but deeper than msgpack's parser stack
        # must still be a protocol error, never RecursionError or a crash.
        with pytest.raises(RemoteProtocolError):
            wire.unpack(b"\x91" * 50_000 + b"\xc0", max_size=LIMIT)


# Each of these is a well-formed msgpack encoding that is not canonical (or not
# msgpack at all); decode must refuse every one with RemoteProtocolError.
NON_CANONICAL = {
    "unsorted map keys": b"\x82\xa1b\x01\xa1a\x02",
    "unsorted nested map": b"\x91\x82\xa1b\x01\xa1a\x02",
    "duplicate keys": b"\x82\xa1a\x01\xa1a\x02",
    "duplicate keys, same value": b"\x82\xa1a\x01\xa1a\x01",
    "int key": b"\x81\x01\x02",
    "bin key": b"\x81\xc4\x01a\x01",
    "nil key": b"\x81\xc0\x01",
    "array key": b"\x81\x90\x01",
    "5 as uint8": b"\xcc\x05",
    "5 as uint16": b"\xcd\x00\x05",
    "5 as uint32": b"\xce\x00\x00\x00\x05",
    "5 as uint64": b"\xcf" + (5).to_bytes(8, "big"),
    "5 as int8": b"\xd0\x05",
    "-1 as int8": b"\xd0\xff",
    "-1 as int64": b"\xd3" + (-1).to_bytes(8, "big", signed=True),
    "200 as uint16": b"\xcd\x00\xc8",
    "float32": b"\xca\x3f\xc0\x00\x00",
    "float64": b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
    "float64 zero": b"\xcb" + bytes(8),
    "float in a list": b"\x91\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00",
    "fixext1": b"\xd4\x01\x00",
    "ext8": b"\xc7\x01\x05\x00",
    "timestamp ext": b"\xd6\xff\x00\x00\x00\x00",
    "ext inside a map": b"\x81\xa1a\xd4\x01\x00",
    "short str as str8": b"\xd9\x01a",
    "short bin as bin16": b"\xc5\x00\x01a",
    "empty array as array16": b"\xdc\x00\x00",
    "empty map as map16": b"\xde\x00\x00",
    "invalid utf-8": b"\xa1\xff",
    "utf-8 surrogate": b"\xa3\xed\xa0\x80",
    "reserved byte 0xc1": b"\xc1",
    "trailing byte": b"\x01\x00",
    "two values": b"\xc0\xc0",
    "truncated array": b"\x92\x01",
    "truncated str": b"\xa5abc",
    "truncated int": b"\xcd\x01",
    "empty input": b"",
}


class TestDecodeRejects:
    @pytest.mark.parametrize("data", NON_CANONICAL.values(), ids=NON_CANONICAL.keys())
    def test_non_canonical(self, data: bytes) -> None:
        with pytest.raises(RemoteProtocolError):
            _decode(data)

    def test_str_is_not_bytes(self) -> None:
        # The same payload as str and as bin decodes to different types: a decoder that
        # expects bytes must see a str, never a silently converted value.
        assert _decode(b"\xa1a") == "a"
        assert _decode(b"\xc4\x01a") == b"a"

    def test_oversize(self) -> None:
        data = wire.encode(b"x" * 100)
        assert wire.decode(data, max_size=len(data)) == b"x" * 100
        with pytest.raises(RemoteProtocolError):
            wire.decode(data, max_size=len(data) - 1)
        with pytest.raises(RemoteProtocolError):
            wire.unpack(data, max_size=len(data) - 1)

    def test_too_many_items(self) -> None:
        data = wire.encode(list(range(10)))
        assert wire.decode(data, max_size=LIMIT, max_items=10) == list(range(10))
        with pytest.raises(RemoteProtocolError):
            wire.decode(data, max_size=LIMIT, max_items=9)
        big_map = wire.encode({str(i): i for i in range(10)})
        with pytest.raises(RemoteProtocolError):
            wire.decode(big_map, max_size=LIMIT, max_items=9)

    def test_declared_length_beyond_the_data(self) -> None:
        for data in (b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xc6\x7f\xff\xff\xff"):
            with pytest.raises(RemoteProtocolError):
                _decode(data)

    @pytest.mark.parametrize("data", [bytearray(b"\x01"), memoryview(b"\x01"), "\x01", None])
    def test_only_bytes_are_accepted(self, data: Any) -> None:
        with pytest.raises(RemoteProtocolError):
            _decode(data)
        with pytest.raises(RemoteProtocolError):
            wire.unpack(data, max_size=LIMIT)


class TestUnpack:
    def test_returns_the_value_without_the_canonical_check(self) -> None:
        assert wire.unpack(b"\xcc\x05", max_size=LIMIT) == 5
        assert wire.unpack(b"\x82\xa1b\x01\xa1a\x02", max_size=LIMIT) == {"b": 1, "a": 2}

    @pytest.mark.parametrize(
        "data",
        [
            NON_CANONICAL["trailing byte"],
            NON_CANONICAL["two values"],
            NON_CANONICAL["fixext1"],
            NON_CANONICAL["timestamp ext"],
            NON_CANONICAL["invalid utf-8"],
            NON_CANONICAL["truncated array"],
            NON_CANONICAL["reserved byte 0xc1"],
            NON_CANONICAL["empty input"],
        ],
    )
    def test_rejects_malformed(self, data: bytes) -> None:
        with pytest.raises(RemoteProtocolError):
            wire.unpack(data, max_size=LIMIT)

    def test_floats_are_left_to_the_canonical_check(self) -> None:
        # Documented: floats decode in unpack; check_canonical (or the caller's exact
        # type checks) refuses them.
        value = wire.unpack(NON_CANONICAL["float64"], max_size=LIMIT)
        assert value == 1.5
        with pytest.raises(RemoteProtocolError):
            wire.check_canonical(value)


class TestCheckCanonical:
    def test_accepts_canonical_values(self) -> None:
        wire.check_canonical({"a": [1, b"x", "s", None, True, {"b": []}]})

    @pytest.mark.parametrize(
        "value",
        [{"b": 1, "a": 2}, {1: 2}, {b"a": 1}, (1, 2), 1.0, [1.0], {"a": {2.0}}, bytearray()],
        ids=repr,
    )
    def test_rejects(self, value: Any) -> None:
        with pytest.raises(RemoteProtocolError):
            wire.check_canonical(value)


@pytest.mark.parametrize("length", [0, 1, 255, 256, 65535, 65536, 70000])
def test_bin_header_len_matches_msgpack(length: int) -> None:
    assert wire.bin_header_len(length) == len(msgpack.packb(bytes(length))) - length
