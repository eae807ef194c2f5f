"""Op creation and envelope opening against the raw libsodium limit, measured in one run.

Prints one JSON object:
- op_create_p50_us / op_create_p99_us: build + canonical-encode + sign + pad + encrypt +
  envelope id, per op, over a realistic mix of op types and sizes;
- open_per_s: parse + decrypt + unpad + decode + canonical checks + verify + ids, per second;
- raw_verify_decrypt_per_s: the same envelopes' bare libsodium XChaCha20-Poly1305 decrypt
  plus Ed25519 verify (inputs pre-extracted), per second: the ceiling;
- open_ratio = open_per_s / raw_verify_decrypt_per_s (medians of interleaved rounds).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from benchmarks._ceiling import raw_open_per_s
from benchmarks._workload import realistic_body
from crypto import EpochKey, Identity, NetworkSecret, random_bytes
from crypto.identity import signing_input
from protocol import open_group, parse_envelope, seal_group, sign_op, wire

N_OPS = 4000
ROUNDS = 7


def main() -> None:
    rng = random.Random(1)
    authors = [Identity.generate() for _ in range(10)]
    secret = NetworkSecret.generate()
    epoch = EpochKey.generate()
    net, tag = secret.network_id, secret.route_tag

    create_us: list[float] = []
    envelopes: list[bytes] = []
    parents: list[bytes] = []
    bodies = [realistic_body(rng) for _ in range(N_OPS)]
    for i, (op_type, body) in enumerate(bodies):
        author = authors[i % len(authors)]
        t0 = time.perf_counter_ns()
        op = sign_op(
            author,
            net=net,
            seq=i + 1,
            lamport=i + 1,
            parents=parents,
            time=1_700_000_000_000 + i,
            type=op_type,
            body=body,
        )
        env = seal_group(op, epoch=epoch, route_tag=tag, nonce=random_bytes(24))
        parse_envelope(env)  # the envelope id, as the store needs it
        create_us.append((time.perf_counter_ns() - t0) / 1000)
        parents = [op.op_id]
        envelopes.append(env)

    # Pre-extract what the raw loop needs so it measures only libsodium.
    raw_inputs = []
    for env in envelopes:
        parsed = parse_envelope(env)
        op = open_group(parsed, epochs={epoch.epoch_id: epoch}, network_id=net, route_tag=tag)
        op_bytes, signature = wire.unpack(op.signed, max_size=1 << 17)
        raw_inputs.append(
            (
                parsed.ciphertext,
                parsed.aad,
                parsed.nonce,
                signature + signing_input(b"op", op_bytes),
                op.author,
            )
        )

    epochs = {epoch.epoch_id: epoch}
    open_rates, raw_rates = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for env in envelopes:
            open_group(parse_envelope(env), epochs=epochs, network_id=net, route_tag=tag)
        open_rates.append(len(envelopes) / (time.perf_counter() - t0))
        raw_rates.append(raw_open_per_s(raw_inputs, epoch.key))

    create_us.sort()
    open_per_s = statistics.median(open_rates)
    raw_per_s = statistics.median(raw_rates)
    print(
        json.dumps(
            {
                "op_create_p50_us": round(statistics.median(create_us), 1),
                "op_create_p99_us": round(create_us[int(len(create_us) * 0.99)], 1),
                "open_per_s": round(open_per_s),
                "raw_verify_decrypt_per_s": round(raw_per_s),
                "open_ratio": round(open_per_s / raw_per_s, 3),
                "ops": N_OPS,
                "mean_envelope_bytes": round(sum(map(len, envelopes)) / len(envelopes)),
            }
        )
    )


if __name__ == "__main__":
    main()
