#!/usr/bin/env python3
"""Checks a breakglass audit log (format 2) without breakglass.

    scripts/verify-audit-log.py LOG [PUBLIC_KEY_HEX]

Each line is {"v":2,"record":RECORD,"hash":"HEX","sig":"HEX"}. RECORD is
taken as the exact text between the fixed prefix and the last ',"hash":"';
its SHA-256 must equal `hash`, its `prev` the previous line's `hash` (64
zeros for the first), and `sig` must be the Ed25519 signature of the digest
by the key the run-start record names (`audit_key`), which must equal
PUBLIC_KEY_HEX. Signatures need the `cryptography` package; the chain
needs only the standard library.

Anyone can write a log that chains and signs with a key of their own, so a
log is trusted only when every signature checks against the responder's
PUBLIC_KEY_HEX (`breakglass audit verify` prints it).

Exit 0: intact, ended with a run-end record, every record signed by
PUBLIC_KEY_HEX; 1: broken or incomplete; 2: not a format 2 breakglass log;
3: intact as a chain but NOT TRUSTED (no key given, or signatures not
checkable here).
"""

import hashlib
import json
import sys

PREFIX = '{"v":2,"record":'
GENESIS = "0" * 64


def split(line):
    if not (line.startswith(PREFIX) and line.endswith('"}')):
        return None
    rest = line[len(PREFIX):-2]
    at = rest.rfind(',"sig":"')
    if at < 0:
        return None
    rest, sig = rest[:at], rest[at + len(',"sig":"'):]
    if not rest.endswith('"'):
        return None
    rest = rest[:-1]
    at = rest.rfind(',"hash":"')
    if at < 0:
        return None
    return rest[:at], rest[at + len(',"hash":"'):], sig


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    expected_key = sys.argv[2].lower() if len(sys.argv) == 3 else None
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        Ed25519PublicKey = None
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    if not raw.endswith(b"\n"):
        print("BROKEN: the last record is cut off")
        return 1
    lines = lines[:-1]
    prev, key, ended, signed = GENESIS, None, False, 0
    for n, data in enumerate(lines, 1):
        parts = split(data.decode("utf-8"))
        if parts is None:
            if n == 1:
                print("not a format 2 breakglass audit log", file=sys.stderr)
                return 2
            print(f"BROKEN at line {n}: not an audit record")
            return 1
        body, digest_hex, sig = parts
        digest = hashlib.sha256(body.encode("utf-8")).digest()
        if digest.hex() != digest_hex:
            print(f"BROKEN at line {n}: record was modified")
            return 1
        record = json.loads(body)
        if record.get("prev") != prev or record.get("seq") != n - 1:
            print(f"BROKEN at line {n}: chain broken")
            return 1
        if n == 1:
            key = record.get("audit_key")
            if record.get("event") != "run_start" or not key:
                print("BROKEN at line 1: no run-start record naming its key")
                return 1
            if expected_key and key.lower() != expected_key:
                print(f"NOT TRUSTED: signed by {key}, not {expected_key}")
                return 1
        if Ed25519PublicKey is not None:
            try:
                Ed25519PublicKey.from_public_bytes(bytes.fromhex(key)).verify(
                    bytes.fromhex(sig), digest
                )
                signed += 1
            except Exception:
                print(f"BROKEN at line {n}: signature does not match")
                return 1
        ended = record.get("event") == "run_end"
        prev = digest_hex
    if not ended:
        print("INTERRUPTED: no run-end record")
        return 1
    if Ed25519PublicKey is None:
        print(f"NOT TRUSTED: the chain of {len(lines)} records holds, head {prev}, but signatures were NOT checked (no cryptography package)")
        return 3
    if not expected_key:
        print(f"NOT TRUSTED: {len(lines)} records chain and are signed by {key}, the key the log names itself; pass the responder's public key to trust it")
        return 3
    print(f"verified: {len(lines)} records, head {prev}, key {key}, {signed} signatures checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
