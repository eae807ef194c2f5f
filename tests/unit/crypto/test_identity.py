"""crypto.identity: Ed25519 through our wrapper, domain separation, sealing, hygiene."""

from __future__ import annotations

from collections.abc import Callable

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import (
    BadSignature,
    CryptoError,
    DecryptionFailed,
    Identity,
    KeyLengthError,
    PublicIdentity,
)
from crypto._primitives import ed25519_verify
from crypto.identity import signing_input
from tests.strategies import identities, seeds

# RFC 8032 section 7.1, "Test Vectors for Ed25519": (name, secret key, public key,
# message, signature), all hex. Each one was checked against libsodium before being
# committed, so a failure here is a bug in the wrapper, not a typo.
_MSG_1024 = (
    "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98"
    "fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
    "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d"
    "658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
    "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe"
    "ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
    "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef"
    "efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7"
    "aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1"
    "85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2"
    "d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24"
    "554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270"
    "88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc"
    "2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07"
    "07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba"
    "b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a"
    "ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e"
    "c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7"
    "51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c"
    "42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8"
    "ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df"
    "f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08"
    "d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649"
    "de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4"
    "88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3"
    "2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e"
    "6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f"
    "b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5"
    "0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1"
    "369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d"
    "b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c"
    "0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0"
)
RFC8032_VECTORS = [
    pytest.param(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        id="TEST 1",
    ),
    pytest.param(
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        id="TEST 2",
    ),
    pytest.param(
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
        "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        id="TEST 3",
    ),
    pytest.param(
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        _MSG_1024,
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350"
        "aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
        id="TEST 1024",
    ),
    pytest.param(
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
        "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
        id="TEST SHA(abc)",
    ),
]

_DOMAIN = b"test"


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032_VECTORS)
class TestRfc8032:
    def test_public_key_from_seed(
        self, secret: str, public: str, message: str, signature: str
    ) -> None:
        assert Identity(bytes.fromhex(secret)).public.key == bytes.fromhex(public)

    def test_vector_verifies_with_our_verifier(
        self, secret: str, public: str, message: str, signature: str
    ) -> None:
        pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
        ed25519_verify(pk, msg, sig)
        with pytest.raises(BadSignature):
            ed25519_verify(pk, msg + b"\x00", sig)
        tampered = bytearray(sig)
        tampered[40] ^= 0x01
        with pytest.raises(BadSignature):
            ed25519_verify(pk, msg, bytes(tampered))

    def test_wrapper_key_reproduces_vector(
        self, secret: str, public: str, message: str, signature: str
    ) -> None:
        # The wrapper's signing key (the one Identity.sign uses) must be the RFC key.
        ident = Identity(bytes.fromhex(secret))
        produced = ident._signing.sign(bytes.fromhex(message)).signature
        assert produced == bytes.fromhex(signature)

    def test_wrapper_signs_the_domain_separated_input(
        self, secret: str, public: str, message: str, signature: str
    ) -> None:
        seed, msg = bytes.fromhex(secret), bytes.fromhex(message)
        expected = nacl.signing.SigningKey(seed).sign(signing_input(_DOMAIN, msg)).signature
        ours = Identity(seed).sign(_DOMAIN, msg)
        assert ours == expected
        # So the raw RFC signature is not what Identity.sign produces...
        assert ours != bytes.fromhex(signature)
        # ...and does not verify as a domain-separated signature.
        with pytest.raises(BadSignature):
            PublicIdentity(bytes.fromhex(public)).verify(_DOMAIN, msg, bytes.fromhex(signature))
        PublicIdentity(bytes.fromhex(public)).verify(_DOMAIN, msg, ours)


class TestSigningInput:
    def test_exact_bytes(self) -> None:
        assert signing_input(b"op", b"abc") == b"p2pnet/op\x00abc"
        assert signing_input(b"invite", b"") == b"p2pnet/invite\x00"

    @pytest.mark.parametrize("domain", [b"", b"o\x00p", b"x" * 33])
    def test_rejects_bad_domains(self, domain: bytes) -> None:
        with pytest.raises(ValueError, match="domain"):
            signing_input(domain, b"m")

    def test_longest_domain_accepted(self) -> None:
        assert signing_input(b"d" * 32, b"m") == b"p2pnet/" + b"d" * 32 + b"\x00m"


class TestSignVerify:
    @settings(max_examples=40, deadline=None)
    @given(ident=identities, message=st.binary(max_size=300))
    def test_round_trip(self, ident: Identity, message: bytes) -> None:
        sig = ident.sign(b"op", message)
        assert len(sig) == 64
        ident.public.verify(b"op", message, sig)

    def test_deterministic(self) -> None:
        ident = Identity(bytes(range(32)))
        assert ident.sign(b"op", b"m") == ident.sign(b"op", b"m")

    def test_other_domain_fails(self) -> None:
        ident = Identity(bytes(range(32)))
        sig = ident.sign(b"op", b"message")
        with pytest.raises(BadSignature):
            ident.public.verify(b"invite", b"message", sig)
        with pytest.raises(BadSignature):
            ident.public.verify(b"op2", b"message", sig)

    def test_domain_and_message_boundary_is_unambiguous(self) -> None:
        # "op" + "x..." and "opx" + "..." must not share a signing input.
        ident = Identity(bytes(range(32)))
        sig = ident.sign(b"op", b"xyz")
        with pytest.raises(BadSignature):
            ident.public.verify(b"opx", b"yz", sig)

    def test_altered_message_fails(self) -> None:
        ident = Identity(bytes(range(32)))
        sig = ident.sign(b"op", b"message")
        with pytest.raises(BadSignature):
            ident.public.verify(b"op", b"messagE", sig)

    def test_other_key_fails(self) -> None:
        alice, bob = Identity(bytes(32)), Identity(bytes([1]) * 32)
        sig = alice.sign(b"op", b"message")
        with pytest.raises(BadSignature):
            bob.public.verify(b"op", b"message", sig)

    @pytest.mark.parametrize("length", [0, 63, 65, 128])
    def test_wrong_length_signature_is_bad_signature(self, length: int) -> None:
        ident = Identity(bytes(range(32)))
        with pytest.raises(BadSignature):
            ident.public.verify(b"op", b"m", bytes(length))


class TestKeyValidation:
    @pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
    def test_seed_length(self, length: int) -> None:
        with pytest.raises(KeyLengthError):
            Identity(bytes(length))

    @pytest.mark.parametrize("length", [0, 31, 33])
    def test_public_key_length(self, length: int) -> None:
        with pytest.raises(KeyLengthError):
            PublicIdentity(bytes(length))

    def test_str_is_not_key_material(self) -> None:
        with pytest.raises(KeyLengthError):
            Identity("x" * 32)  # type: ignore[arg-type]
        with pytest.raises(KeyLengthError):
            PublicIdentity("x" * 32)  # type: ignore[arg-type]

    def test_key_length_error_is_value_error_and_crypto_error(self) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 - the builtin base is the point
            Identity(bytes(31))
        with pytest.raises(CryptoError):
            Identity(bytes(31))

    @pytest.mark.parametrize(
        "key",
        [bytes(32), b"\x01" + bytes(31), b"\xff" * 32],
        ids=["small-order", "identity-point", "not-a-point"],
    )
    def test_invalid_point_has_no_x25519_key(self, key: bytes) -> None:
        with pytest.raises(KeyLengthError):
            PublicIdentity(key).x25519()

    @pytest.mark.parametrize(
        "make",
        [
            lambda raw: Identity(raw(bytes(range(32)))),
            lambda raw: PublicIdentity(raw(Identity(bytes(range(32))).public.key)),
        ],
        ids=["Identity", "PublicIdentity"],
    )
    def test_bytearray_key_material_is_copied_or_refused(
        self, make: Callable[[type[bytes] | type[bytearray]], Identity | PublicIdentity]
    ) -> None:
        # A frozen key object must not hold mutable key material: build it from bytes,
        # or refuse with KeyLengthError (never another library's exception).
        try:
            key = make(bytearray)
        except KeyLengthError:
            return
        from_bytes = make(bytes)
        assert key == from_bytes
        raw = key.seed if isinstance(key, Identity) else key.key
        assert type(raw) is bytes
        assert hash(key) == hash(from_bytes)


class TestIdentityObject:
    def test_generate_gives_distinct_valid_identities(self) -> None:
        a, b = Identity.generate(), Identity.generate()
        assert a.seed != b.seed
        assert a.public != b.public
        b.public.verify(b"op", b"m", b.sign(b"op", b"m"))

    def test_equality_follows_the_seed(self) -> None:
        assert Identity(bytes(32)) == Identity(bytes(32))
        assert Identity(bytes(32)) != Identity(bytes([1]) * 32)
        assert Identity(bytes(32)).public == Identity(bytes(32)).public

    def test_fingerprint_format(self) -> None:
        fpr = Identity(bytes(range(32))).public.fingerprint
        groups = fpr.split(" ")
        assert [len(g) for g in groups] == [4, 4, 4, 4]
        assert all(c in "0123456789abcdef" for c in "".join(groups))
        assert fpr != Identity(bytes(32)).public.fingerprint

    @given(seed=seeds)
    @settings(max_examples=25, deadline=None)
    def test_repr_hides_the_seed(self, seed: bytes) -> None:
        ident = Identity(seed)
        for text in (repr(ident), str(ident), f"{ident!r}", repr([ident])):
            assert seed.hex() not in text
            assert seed.hex().upper() not in text
            assert repr(seed) not in text
            assert repr(seed)[2:-1] not in text
        assert ident.public.fingerprint in repr(ident)


class TestSealing:
    def test_round_trip(self) -> None:
        alice = Identity(bytes(range(32)))
        for plaintext in (b"", b"x", bytes(1000)):
            assert alice.unseal(alice.public.seal(plaintext)) == plaintext

    def test_is_randomised(self) -> None:
        pub = Identity(bytes(range(32))).public
        assert pub.seal(b"same") != pub.seal(b"same")

    def test_other_recipient_cannot_open(self) -> None:
        alice, bob = Identity(bytes(32)), Identity(bytes([1]) * 32)
        with pytest.raises(DecryptionFailed):
            bob.unseal(alice.public.seal(b"for alice"))

    def test_every_tampered_byte_fails(self) -> None:
        alice = Identity(bytes(range(32)))
        sealed = alice.public.seal(b"secret payload")
        for i in range(len(sealed)):
            tampered = bytearray(sealed)
            tampered[i] ^= 0x01
            with pytest.raises(DecryptionFailed):
                alice.unseal(bytes(tampered))

    @pytest.mark.parametrize("length", [0, 1, 47, 48])
    def test_short_input_fails_cleanly(self, length: int) -> None:
        with pytest.raises(DecryptionFailed):
            Identity(bytes(range(32))).unseal(bytes(length))
