"""protocol.signed: building, encoding and verifying signed ops.

The negative tests hand-build op bytes and sign them with the author's real key, so the
only thing that can reject them is the check under test, not the signature.
"""

from __future__ import annotations

from typing import Any

import msgpack
import nacl.signing
import pytest
from hypothesis import given, settings

from crypto import BadSignature, Identity, hash256
from protocol import (
    LocalProtocolError,
    RemoteProtocolError,
    VerifiedOp,
    op_id_of,
    sign_op,
    verify_signed_op,
    wire,
)
from protocol.signed import MAX_COUNTER, MAX_OP_BYTES, MAX_PARENTS, reload_kept_op
from tests.strategies import signed_ops

AUTHOR = Identity(bytes(range(32)))
OTHER = Identity(bytes(32))
NET = bytes(range(16))
PARENTS = [bytes([1]) * 32, bytes([2]) * 32]
FIELD_ORDER = ("author", "body", "lamport", "net", "parents", "seq", "time", "type")


def _fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "author": AUTHOR.public.key,
        "body": {"n": 1, "text": "hello"},
        "lamport": 3,
        "net": NET,
        "parents": PARENTS,
        "seq": 2,
        "time": 1_700_000_000,
        "type": "note",
    }
    fields.update(overrides)
    return fields


def _pack(obj: Any) -> bytes:
    # msgpack keeps dict insertion order, so this can build non-canonical maps.
    return msgpack.packb(obj, use_bin_type=True)


def _op_bytes(fields: dict[str, Any]) -> bytes:
    return _pack({k: fields[k] for k in FIELD_ORDER if k in fields} | fields)


def _signed(op_bytes: bytes, signer: Identity = AUTHOR, domain: bytes = b"op") -> bytes:
    return _pack([op_bytes, signer.sign(domain, op_bytes)])


def _short(value: object) -> str:
    return repr(value)[:40]


def _sign_kwargs(**overrides: Any) -> dict[str, Any]:
    fields = _fields(**overrides)
    del fields["author"]
    return fields


class TestRoundTrip:
    def test_sign_then_verify(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs())
        again = verify_signed_op(op.signed)
        assert again == op
        for got in (op, again):
            assert got.net == NET
            assert got.author == AUTHOR.public.key
            assert (got.seq, got.lamport, got.time) == (2, 3, 1_700_000_000)
            assert got.parents == tuple(PARENTS)
            assert got.type == "note"
            assert got.body == {"n": 1, "text": "hello"}
            assert got.op_id == hash256(got.signed) == op_id_of(got.signed)
        assert again.signed == op.signed

    @settings(max_examples=60, deadline=None)
    @given(op=signed_ops())
    def test_any_valid_op_round_trips(self, op: VerifiedOp) -> None:
        again = verify_signed_op(op.signed)
        assert again == op
        assert tuple(again) == tuple(op)

    def test_hand_built_canonical_op_verifies(self) -> None:
        # The baseline every negative test below departs from by one change.
        signed = _signed(_op_bytes(_fields()))
        op = verify_signed_op(signed)
        assert op.signed == signed
        assert op == sign_op(AUTHOR, **_sign_kwargs())

    def test_wire_layout(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs())
        outer = wire.decode(op.signed, max_size=1 << 16)
        assert isinstance(outer, list)
        assert len(outer) == 2
        op_bytes, signature = outer
        decoded = wire.decode(op_bytes, max_size=1 << 16)
        assert tuple(decoded) == FIELD_ORDER
        assert decoded["author"] == AUTHOR.public.key
        # The signature is over b"p2pnet/op\x00" + op_bytes.
        AUTHOR.public.verify(b"op", op_bytes, signature)
        nacl.signing.VerifyKey(AUTHOR.public.key).verify(b"p2pnet/op\x00" + op_bytes, signature)

    def test_parents_are_sorted(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs(parents=list(reversed(PARENTS))))
        assert op.parents == tuple(PARENTS)
        assert op == sign_op(AUTHOR, **_sign_kwargs(parents=PARENTS))

    def test_deterministic_and_distinct(self) -> None:
        a = sign_op(AUTHOR, **_sign_kwargs())
        b = sign_op(AUTHOR, **_sign_kwargs())
        c = sign_op(AUTHOR, **_sign_kwargs(seq=3))
        assert a.signed == b.signed
        assert a == b
        assert hash(a) == hash(b)
        assert a != c
        assert a.op_id != c.op_id
        assert len({a, b, c}) == 2

    def test_limits_are_inclusive(self) -> None:
        many = sorted(bytes([i]) * 32 for i in range(MAX_PARENTS))
        op = sign_op(
            AUTHOR,
            **_sign_kwargs(
                seq=MAX_COUNTER,
                lamport=MAX_COUNTER,
                time=MAX_COUNTER,
                parents=many,
                type="a" + "_" * 31,
            ),
        )
        assert verify_signed_op(op.signed) == op
        first = sign_op(AUTHOR, **_sign_kwargs(seq=1, lamport=1, time=0, parents=[], body={}))
        assert verify_signed_op(first.signed).parents == ()


class TestVerifiedOpIsAProof:
    def test_cannot_be_constructed(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs())
        with pytest.raises(TypeError):
            VerifiedOp()
        with pytest.raises(TypeError):
            VerifiedOp(tuple(op))
        with pytest.raises(TypeError):
            VerifiedOp.__new__(VerifiedOp, tuple(op))

    def test_not_equal_to_a_plain_tuple(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs())
        assert op != tuple(op)
        assert tuple(op) != op

    def test_repr(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs())
        text = repr(op)
        assert "note" in text
        assert op.op_id.hex()[:16] in text


class TestSignOpRefuses:
    @pytest.mark.parametrize(
        "overrides",
        [
            {"net": bytes(15)},
            {"net": bytes(17)},
            {"seq": 0},
            {"seq": MAX_COUNTER + 1},
            {"lamport": 0},
            {"time": -1},
            {"parents": [bytes(32), bytes(32)]},
            {"parents": [bytes(31)]},
            {"parents": [bytes([i]) * 32 for i in range(MAX_PARENTS + 1)]},
            {"type": ""},
            {"type": "Note"},
            {"type": "a" * 33},
            {"body": {"x": 1.5}},
            {"body": {b"x": 1}},
            {"body": {"big": b"x" * MAX_OP_BYTES}},
        ],
        ids=_short,
    )
    def test_invalid_fields(self, overrides: dict[str, Any]) -> None:
        with pytest.raises(LocalProtocolError):
            sign_op(AUTHOR, **_sign_kwargs(**overrides))

    @pytest.mark.parametrize(
        "parents",
        [[bytes(32), "p" * 32], None, [None, bytes(32)]],
        ids=["bytes-and-str", "none", "none-item"],
    )
    def test_unsortable_parents(self, parents: Any) -> None:
        # Documented: "LocalProtocolError: a field is invalid" - not whatever sorted() says.
        with pytest.raises(LocalProtocolError):
            sign_op(AUTHOR, **_sign_kwargs(parents=parents))


def _reject(signed: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        verify_signed_op(signed)


class TestOpFields:
    @pytest.mark.parametrize("name", FIELD_ORDER)
    def test_missing_field(self, name: str) -> None:
        fields = _fields()
        del fields[name]
        _reject(_signed(_op_bytes(fields)))

    @pytest.mark.parametrize("extra", ["zzz", "aaa", "extra", "sig"])
    def test_unknown_field(self, extra: str) -> None:
        fields = dict(sorted({**_fields(), extra: 1}.items()))
        _reject(_signed(_pack(fields)))

    def test_fields_out_of_order(self) -> None:
        fields = _fields()
        _reject(_signed(_pack(dict(reversed(list(fields.items()))))))
        swapped = dict(fields)
        swapped = {"body": swapped.pop("body"), **swapped}
        _reject(_signed(_pack(swapped)))

    def test_duplicate_field(self) -> None:
        op_bytes = _op_bytes(_fields())
        # Append a second "type" entry and bump the fixmap length from 8 to 9.
        assert op_bytes[0] == 0x88
        duplicated = b"\x89" + op_bytes[1:] + _pack("type") + _pack("other")
        _reject(_signed(duplicated))

    @pytest.mark.parametrize(
        "overrides",
        [
            {"author": bytes(31)},
            {"author": bytes(33)},
            {"author": "a" * 32},
            {"net": bytes(15)},
            {"net": bytes(17)},
            {"net": "n" * 16},
            {"parents": [bytes(31)]},
            {"parents": [bytes(33)]},
            {"parents": ["p" * 32]},
            {"parents": [bytes([2]) * 32, bytes([1]) * 32]},
            {"parents": [bytes([1]) * 32, bytes([1]) * 32]},
            {"parents": [bytes([i]) * 32 for i in range(MAX_PARENTS + 1)]},
            {"parents": bytes(32)},
            {"parents": None},
            {"seq": 0},
            {"seq": -1},
            {"seq": MAX_COUNTER + 1},
            {"seq": True},
            {"seq": 2.0},
            {"seq": "2"},
            {"lamport": 0},
            {"lamport": MAX_COUNTER + 1},
            {"time": -1},
            {"time": MAX_COUNTER + 1},
            {"time": 1.5},
            {"time": None},
            {"type": ""},
            {"type": "Note"},
            {"type": "1note"},
            {"type": "no-te"},
            {"type": "a" * 33},
            {"type": b"note"},
            {"body": []},
            {"body": None},
            {"body": "text"},
            {"body": {"x": 1.5}},
            {"body": {"x": [msgpack.ExtType(1, b"")]}},
            {"body": {1: "int key"}},
            {"body": {b"k": "bin key"}},
            {"body": {"b": 1, "a": 2}},
            {"body": {"deep": [[[[[[[[[]]]]]]]]]}},
        ],
        ids=_short,
    )
    def test_bad_field(self, overrides: dict[str, Any]) -> None:
        _reject(_signed(_op_bytes(_fields(**overrides))))


class TestCanonicalEncoding:
    def test_non_minimal_int(self) -> None:
        op_bytes = _op_bytes(_fields(seq=5))
        minimal = _pack("seq") + b"\x05"
        assert op_bytes.count(minimal) == 1
        for wide in (b"\xcc\x05", b"\xcd\x00\x05", b"\xce\x00\x00\x00\x05", b"\xd0\x05"):
            _reject(_signed(op_bytes.replace(minimal, _pack("seq") + wide)))

    def test_non_minimal_headers_inside_the_op(self) -> None:
        op_bytes = _op_bytes(_fields())
        net = b"\xc4\x10" + NET
        assert op_bytes.count(net) == 1
        _reject(_signed(op_bytes.replace(net, b"\xc5\x00\x10" + NET)))
        assert op_bytes[0] == 0x88
        _reject(_signed(b"\xde\x00\x08" + op_bytes[1:]))

    def test_trailing_bytes_in_op(self) -> None:
        _reject(_signed(_op_bytes(_fields()) + b"\xc0"))

    def test_trailing_bytes_after_signed_op(self) -> None:
        signed = _signed(_op_bytes(_fields()))
        _reject(signed + b"\x00")

    def test_non_minimal_outer_encoding(self) -> None:
        op_bytes = _op_bytes(_fields())
        sig = AUTHOR.sign(b"op", op_bytes)
        assert len(op_bytes) < 256
        sig_part = b"\xc4\x40" + sig
        candidates = [
            b"\xdc\x00\x02" + b"\xc4" + bytes([len(op_bytes)]) + op_bytes + sig_part,
            b"\x92\xc5" + len(op_bytes).to_bytes(2, "big") + op_bytes + sig_part,
            b"\x92\xc4" + bytes([len(op_bytes)]) + op_bytes + b"\xc5\x00\x40" + sig,
        ]
        for candidate in candidates:
            _reject(candidate)

    @pytest.mark.parametrize(
        "outer",
        [
            lambda ob, sig: [ob],
            lambda ob, sig: [ob, sig, sig],
            lambda ob, sig: [ob, sig[:63]],
            lambda ob, sig: [ob, sig + b"\x00"],
            lambda ob, sig: [ob, sig.hex()],
            lambda ob, sig: [ob.decode("latin-1"), sig],
            lambda ob, sig: {"op": ob, "sig": sig},
            lambda ob, sig: ob,
            lambda ob, sig: [sig, ob],
        ],
        ids=[
            "one-item",
            "three-items",
            "short-sig",
            "long-sig",
            "str-sig",
            "str-op",
            "map",
            "bare-op",
            "swapped",
        ],
    )
    def test_outer_shape(self, outer: Any) -> None:
        op_bytes = _op_bytes(_fields())
        sig = AUTHOR.sign(b"op", op_bytes)
        _reject(_pack(outer(op_bytes, sig)))

    def test_oversize(self) -> None:
        body = {"blob": b"x" * (MAX_OP_BYTES - 300)}
        op = sign_op(AUTHOR, **_sign_kwargs(body=body))
        assert verify_signed_op(op.signed) == op
        too_big = _op_bytes(_fields(body={"blob": b"x" * MAX_OP_BYTES}))
        _reject(_signed(too_big))

    def test_garbage(self) -> None:
        for data in (b"", b"\x00", b"\x92", b"\xc1", bytes(200)):
            _reject(data)


class TestSignature:
    def test_signed_by_another_key(self) -> None:
        with pytest.raises(BadSignature):
            verify_signed_op(_signed(_op_bytes(_fields()), signer=OTHER))

    def test_claimed_author_swapped(self) -> None:
        # AUTHOR signs an op that names OTHER as its author; only OTHER's own works.
        other_op = _op_bytes(_fields(author=OTHER.public.key))
        with pytest.raises(BadSignature):
            verify_signed_op(_signed(other_op, signer=AUTHOR))
        verify_signed_op(_signed(other_op, signer=OTHER))

    def test_signature_without_the_domain(self) -> None:
        op_bytes = _op_bytes(_fields())
        raw = nacl.signing.SigningKey(AUTHOR.seed).sign(op_bytes).signature
        with pytest.raises(BadSignature):
            verify_signed_op(_pack([op_bytes, raw]))

    @pytest.mark.parametrize("domain", [b"invite", b"op2", b"o"])
    def test_signature_for_another_domain(self, domain: bytes) -> None:
        with pytest.raises(BadSignature):
            verify_signed_op(_signed(_op_bytes(_fields()), domain=domain))

    def test_every_signature_bit(self) -> None:
        op_bytes = _op_bytes(_fields())
        sig = AUTHOR.sign(b"op", op_bytes)
        for i in range(64):
            for mask in (0x01, 0x80):
                bad = bytearray(sig)
                bad[i] ^= mask
                with pytest.raises(BadSignature):
                    verify_signed_op(_pack([op_bytes, bytes(bad)]))

    def test_signature_over_other_fields(self) -> None:
        # A valid signature of one op pasted onto another op by the same author.
        a = _op_bytes(_fields(seq=2))
        b = _op_bytes(_fields(seq=3))
        with pytest.raises(BadSignature):
            verify_signed_op(_pack([b, AUTHOR.sign(b"op", a)]))


class TestReloadKeptOp:
    """Ops a node kept beside their envelopes: no signature or body check again, but
    bytes that are not a well-formed op are refused, never a crash further on."""

    def test_round_trip(self) -> None:
        op = sign_op(AUTHOR, **_sign_kwargs())
        again = reload_kept_op(op.signed, op.op_id)
        assert tuple(again) == tuple(op)

    def test_no_signature_check(self) -> None:
        signed = _pack([_op_bytes(_fields()), bytes(64)])
        assert reload_kept_op(signed, op_id_of(signed)).seq == 2

    @pytest.mark.parametrize(
        "overrides",
        [
            {"seq": 0},
            {"seq": -1},
            {"seq": "2"},
            {"lamport": 0},
            {"lamport": MAX_COUNTER + 1},
            {"net": "net"},
            {"author": 7},
            {"time": "noon"},
            {"type": 5},
            {"body": [1, 2]},
            {"parents": b"x" * 32},
            {"parents": [[1], b"x" * 32]},
            {"parents": [None]},
        ],
        ids=_short,
    )
    def test_fields_the_dag_relies_on(self, overrides: dict[str, Any]) -> None:
        signed = _signed(_op_bytes(_fields(**overrides)))
        with pytest.raises(RemoteProtocolError, match="damaged"):
            reload_kept_op(signed, op_id_of(signed))

    @pytest.mark.parametrize(
        "signed",
        [b"", bytes(80), b"\x92\xc4\x03abc" + bytes(70), _pack([_pack([1, 2, 3]), bytes(64)])],
        ids=_short,
    )
    def test_not_an_op(self, signed: bytes) -> None:
        with pytest.raises(RemoteProtocolError, match="damaged"):
            reload_kept_op(signed, b"i" * 32)
