#!/usr/bin/env python3
"""botocore's CloudFrontSigner as a test oracle and a benchmark contender.

  botocore_oracle.py sign < cases.json > results.json
      Signs each case of a JSON array and writes a JSON array of results in
      the same order. A case:
        {"url": str, "key_id": str, "private_key": "/path/to/rsa.pem",
         "policy": "canned" | "custom", "expires": epoch,
         "not_before": epoch | null, "ip": str | null,
         "resource": str | null, "cookies": bool}
      "private_key" is an unencrypted RSA PEM (PKCS#1 or PKCS#8); "resource"
      is the custom-policy resource (default: the url); "not_before" and "ip"
      only go into custom policies. A result is {"url": signed_url}, or with
      "cookies": true {"cookies": [["CloudFront-Expires" | "CloudFront-Policy", v],
      ["CloudFront-Signature", v], ["CloudFront-Key-Pair-Id", v]]}, the values
      being the ones botocore put in the URL it signed.

  botocore_oracle.py bench --key PEM --key-id ID --count N --url-prefix URL
      Signs N distinct canned-policy URLs (URL + index) and prints one line
      {"signer": "botocore", "count": N, "seconds": S, "per_second": R}.

Signatures are RSA PKCS#1 v1.5 with SHA-1, made with `cryptography`, as
botocore's documentation prescribes for CloudFrontSigner.
"""
import argparse
import functools
import json
import sys
import time
from datetime import datetime, timedelta, timezone

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

BENCH_VALIDITY = timedelta(hours=1)


@functools.lru_cache(maxsize=None)
def load_private_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def make_signer(key_id, key_path):
    key = load_private_key(key_path)

    def rsa_signer(message):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA1())

    return CloudFrontSigner(key_id, rsa_signer)


def utc(epoch):
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)


def signed_url(case):
    signer = make_signer(case["key_id"], case["private_key"])
    url, expires = case["url"], utc(case["expires"])
    if case["policy"] == "canned":
        return signer.generate_presigned_url(url, date_less_than=expires)
    if case["policy"] != "custom":
        raise ValueError(f"policy must be canned or custom, got {case['policy']!r}")
    policy = signer.build_policy(case.get("resource") or url, expires,
                                 utc(case.get("not_before")), case.get("ip"))
    return signer.generate_presigned_url(url, policy=policy)


def cookies_from(url, signed):
    """The signing parameters botocore appended to URL, as CloudFront-* cookies."""
    appended = signed[len(url) + 1:]
    pairs = [part.partition("=") for part in appended.split("&")]
    return [[f"CloudFront-{name}", value] for name, _, value in pairs]


def sign_case(case):
    signed = signed_url(case)
    if case.get("cookies"):
        return {"cookies": cookies_from(case["url"], signed)}
    return {"url": signed}


def sign_mode():
    cases = json.load(sys.stdin)
    json.dump([sign_case(case) for case in cases], sys.stdout)
    sys.stdout.write("\n")


def bench_mode(args):
    signer = make_signer(args.key_id, args.key)
    expires = datetime.now(tz=timezone.utc) + BENCH_VALIDITY
    start = time.perf_counter()
    for index in range(args.count):
        signer.generate_presigned_url(f"{args.url_prefix}{index}", date_less_than=expires)
    seconds = time.perf_counter() - start
    print(json.dumps({"signer": "botocore", "count": args.count, "seconds": round(seconds, 6),
                      "per_second": round(args.count / seconds, 1)}), flush=True)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description="botocore CloudFrontSigner oracle and benchmark.")
    modes = parser.add_subparsers(dest="mode", required=True)
    modes.add_parser("sign", help="sign the JSON array of cases on stdin")
    bench = modes.add_parser("bench", help="time canned-policy signing")
    bench.add_argument("--key", required=True, help="RSA private key PEM")
    bench.add_argument("--key-id", required=True)
    bench.add_argument("--count", type=positive_int, required=True)
    bench.add_argument("--url-prefix", required=True)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.mode == "sign":
        sign_mode()
    else:
        bench_mode(args)


if __name__ == "__main__":
    main()
