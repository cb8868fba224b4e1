#!/usr/bin/env python3
"""A stand-in CloudFront edge for the integration tests.

An HTTP server that checks CloudFront signed URLs and signed cookies the way
CloudFront does, and forwards the requests it lets through (GET and HEAD) to
an S3-compatible origin, re-signed with SigV4 like CloudFront Origin Access
Control. One process is one distribution.

  edge_verifier.py --listen 127.0.0.1:0 --origin http://127.0.0.1:7480 --bucket BUCKET
      [--region us-east-1]
      [--trusted-key-group ID=PUBLIC_KEY_PEM ...]   keys of the trusted key groups (K...)
      [--trusted-signer ID=PUBLIC_KEY_PEM ...]      legacy trusted signers (APKA...)
      [--trust-forwarded-for]   client IP = first X-Forwarded-For entry
      [--scheme http]           scheme of the resource URL that was signed

The origin credentials come from ORIGIN_ACCESS_KEY / ORIGIN_SECRET_KEY. Once
listening it prints `ready PORT` on stdout; each request decision is logged
as one line on stderr (never a signature or a secret).

Checks: the signing parameters come from the query (Expires or Policy,
Signature, Key-Pair-Id, optional Hash-Algorithm) or, when the query has no
Signature, from the CloudFront-* cookies. The resource URL is
`{scheme}://{Host}{raw path}` plus the raw query without the signing
parameters. The key id must be one this distribution trusts; RSA keys verify
PKCS#1 v1.5, EC P-256 keys verify DER ECDSA, with SHA-1 (default) or SHA-256
(Hash-Algorithm=SHA256). Canned policies are rebuilt from the resource URL and
Expires; custom policies are the signed bytes themselves, checked for
Resource (wildcards `*` and `?`), DateLessThan, DateGreaterThan and
IpAddress. A refusal is 403 `AccessDenied: <reason>` with X-Edge-Reason.

GET /__edge/health answers 200 "ok" without a signature.
"""
import argparse
import base64
import binascii
import ipaddress
import json
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

SIGNING_PARAMS = ("Expires", "Policy", "Signature", "Key-Pair-Id", "Hash-Algorithm")
COOKIE_PREFIX = "CloudFront-"
HASH_ALGORITHMS = {None: hashes.SHA1, "SHA1": hashes.SHA1, "SHA256": hashes.SHA256}
ORIGIN_HEADERS = ("Content-Length", "Content-Type", "Content-Range", "Accept-Ranges",
                  "ETag", "Last-Modified", "Content-Disposition")
OVERRIDE_PARAMS = {"response-content-disposition": "ResponseContentDisposition",
                   "response-content-type": "ResponseContentType"}
HEALTH_PATH = "/__edge/health"
CHUNK_BYTES = 1 << 20
ORIGIN_TIMEOUT_SECONDS = 120


class Denied(Exception):
    """A request CloudFront would refuse; the message is the reason."""


# --- CloudFront encoding and the signed resource ---------------------------

def cf_b64decode(text):
    """Decode CloudFront's URL-safe base64 (`-`, `_`, `~` for `+`, `=`, `/`)."""
    standard = text.replace("-", "+").replace("_", "=").replace("~", "/")
    try:
        return base64.b64decode(standard, validate=True)
    except binascii.Error as err:
        raise Denied(f"malformed CloudFront base64 ({err})") from None


def split_target(target):
    """The raw path and raw query (None when absent) of an origin-form target."""
    path, sep, query = target.partition("?")
    return path, (query if sep else None)


def split_query(query):
    """Separate the signing parameters from the others, all kept raw.

    Returns (kept, signing): the other parameters in their original order
    and encoding, and the signing parameters percent-decoded by name.
    """
    kept, signing = [], {}
    for part in query.split("&") if query is not None else []:
        name, _, value = part.partition("=")
        if name not in SIGNING_PARAMS:
            kept.append(part)
        elif name in signing:
            raise Denied(f"query parameter {name} given twice")
        else:
            signing[name] = urllib.parse.unquote(value)
    return kept, signing


def resource_url(scheme, host, path, kept):
    query = "&".join(kept)
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def parse_cookies(header_values):
    """The CloudFront-* cookies of the Cookie headers, by name without the prefix."""
    found = {}
    for header in header_values:
        for item in header.split(";"):
            name, _, value = item.strip().partition("=")
            if name.startswith(COOKIE_PREFIX):
                found.setdefault(name[len(COOKIE_PREFIX):], value.strip().strip('"'))
    return found


def signing_params(query_signing, cookie_headers):
    """The signing parameters: from the query if it has a Signature, else the cookies."""
    if "Signature" in query_signing:
        source, params = "query", query_signing
    else:
        source, params = "cookies", parse_cookies(cookie_headers)
    for name in ("Signature", "Key-Pair-Id"):
        if not params.get(name):
            raise Denied(f"no {name} in the {source}")
    has_expires, has_policy = "Expires" in params, "Policy" in params
    if has_expires == has_policy:
        raise Denied(f"the {source} must carry exactly one of Expires and Policy")
    return params


# --- signatures and policies ------------------------------------------------

def verify_signature(public_key, signature, message, algorithm):
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, message, padding.PKCS1v15(), algorithm())
        else:
            public_key.verify(signature, message, ec.ECDSA(algorithm()))
    except InvalidSignature:
        raise Denied(f"signature does not match ({algorithm.name})") from None


def canned_policy(resource, expires):
    return ('{"Statement":[{"Resource":%s,"Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}'
            % (json.dumps(resource), expires))


def parse_expires(text):
    if not re.fullmatch(r"[0-9]+", text):
        raise Denied("Expires is not an integer")
    return int(text)


def wildcard_matches(pattern, text):
    """CloudFront resource matching: `*` any run of characters, `?` exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.DOTALL) is not None


def epoch_condition(condition, operator):
    """The AWS:EpochTime of a date condition, or None when the operator is absent."""
    if operator not in condition:
        return None
    value = condition[operator]
    epoch = value.get("AWS:EpochTime") if isinstance(value, dict) else None
    if type(epoch) is not int or len(value) != 1:
        raise Denied(f"policy {operator} must be {{\"AWS:EpochTime\": <integer>}}")
    return epoch


def source_ip_network(condition):
    """The IpAddress AWS:SourceIp network, or None when absent."""
    if "IpAddress" not in condition:
        return None
    value = condition["IpAddress"]
    cidr = value.get("AWS:SourceIp") if isinstance(value, dict) else None
    try:
        if not isinstance(cidr, str) or len(value) != 1:
            raise ValueError
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise Denied('policy IpAddress must be {"AWS:SourceIp": "<CIDR>"}') from None


def policy_statement(policy_bytes):
    try:
        policy = json.loads(policy_bytes)
        statements = policy["Statement"]
        if not isinstance(statements, list) or len(statements) != 1:
            raise ValueError
        statement = statements[0]
        if not isinstance(statement, dict) or not isinstance(statement["Condition"], dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise Denied("policy is not JSON with exactly one Statement holding a Condition") from None
    return statement


def check_custom_policy(policy_bytes, resource, client_ip, now):
    statement = policy_statement(policy_bytes)
    pattern = statement.get("Resource")
    if pattern is not None and not (isinstance(pattern, str) and wildcard_matches(pattern, resource)):
        raise Denied(f"policy Resource does not match {resource}")
    condition = statement["Condition"]
    unknown = set(condition) - {"DateLessThan", "DateGreaterThan", "IpAddress"}
    if unknown:
        raise Denied(f"policy has unsupported conditions {sorted(unknown)}")
    not_after = epoch_condition(condition, "DateLessThan")
    if not_after is None:
        raise Denied("policy has no DateLessThan")
    if not now < not_after:
        raise Denied(f"policy expired at {not_after}")
    not_before = epoch_condition(condition, "DateGreaterThan")
    if not_before is not None and not now >= not_before:
        raise Denied(f"policy not valid before {not_before}")
    network = source_ip_network(condition)
    if network is not None and client_ip not in network:
        raise Denied(f"client IP {client_ip} is outside {network}")


class Distribution:
    """The trusted public keys of one distribution and how it checks requests."""

    def __init__(self, key_groups, trusted_signers, scheme):
        self.key_groups = key_groups
        self.trusted_signers = trusted_signers
        self.scheme = scheme

    def public_key(self, key_id):
        key = self.key_groups.get(key_id) or self.trusted_signers.get(key_id)
        if key is None:
            groups = ", ".join(self.key_groups) or "none"
            signers = ", ".join(self.trusted_signers) or "none"
            raise Denied(f"key id {key_id} is not trusted by this distribution "
                         f"(key groups: {groups} / trusted signers: {signers})")
        return key

    def authorize(self, target, host, cookie_headers, client_ip, now):
        """Check the signed request; return the key id that signed it, or raise Denied."""
        path, query = split_target(target)
        kept, query_signing = split_query(query)
        params = signing_params(query_signing, cookie_headers)
        key_id = params["Key-Pair-Id"]
        public_key = self.public_key(key_id)
        hash_name = params.get("Hash-Algorithm")
        if hash_name not in HASH_ALGORITHMS:
            raise Denied(f"unsupported Hash-Algorithm {hash_name}")
        resource = resource_url(self.scheme, host, path, kept)
        signature = cf_b64decode(params["Signature"])
        if "Expires" in params:
            expires = parse_expires(params["Expires"])
            message = canned_policy(resource, expires).encode()
            verify_signature(public_key, signature, message, HASH_ALGORITHMS[hash_name])
            if not now < expires:
                raise Denied(f"URL expired at {expires}")
        else:
            message = cf_b64decode(params["Policy"])
            verify_signature(public_key, signature, message, HASH_ALGORITHMS[hash_name])
            check_custom_policy(message, resource, client_ip, now)
        return key_id


# --- the origin ------------------------------------------------------------

class Origin:
    """The S3 bucket behind the edge, reached with presigned SigV4 URLs."""

    def __init__(self, endpoint, bucket, region, access_key, secret_key):
        self.bucket = bucket
        self.s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name=region,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def open(self, method, key, kept_query, range_header):
        """Open the object; raises urllib.error.HTTPError / URLError like urlopen."""
        params = {"Bucket": self.bucket, "Key": key}
        for name, value in urllib.parse.parse_qsl("&".join(kept_query)):
            if name in OVERRIDE_PARAMS:
                params[OVERRIDE_PARAMS[name]] = value
        operation = "head_object" if method == "HEAD" else "get_object"
        url = self.s3.generate_presigned_url(operation, Params=params, ExpiresIn=300)
        request = urllib.request.Request(url, method=method)
        if range_header:
            request.add_header("Range", range_header)
        return self.opener.open(request, timeout=ORIGIN_TIMEOUT_SECONDS)


# --- HTTP ------------------------------------------------------------------

def header_safe(text, limit=300):
    """Printable ASCII only, so the text can go in a header and a log line."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:limit]


def client_address(handler, trust_forwarded_for):
    """The client IP: the socket peer, or the first X-Forwarded-For entry."""
    text = handler.client_address[0]
    forwarded = handler.headers.get("X-Forwarded-For")
    if trust_forwarded_for and forwarded:
        text = forwarded.split(",")[0].strip()
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise Denied(f"client IP {text!r} is not an IP address") from None
    return getattr(ip, "ipv4_mapped", None) or ip


class EdgeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "stowage-test-edge"

    def do_GET(self):
        if self.raw_path() == HEALTH_PATH:
            self.log_decision("allow", "health")
            self.send_text(200, "ok")
        else:
            self.serve_object()

    def do_HEAD(self):
        self.serve_object()

    def refuse_method(self):
        self.close_connection = True  # the request body, if any, is not read
        self.deny(f"method {self.command} is not allowed by this distribution")

    do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = refuse_method

    def raw_target(self):
        # self.path may have been normalised (leading "//"); the request line has it raw.
        return self.requestline.split()[1]

    def raw_path(self):
        return split_target(self.raw_target())[0]

    def serve_object(self):
        server = self.server
        target = self.raw_target()
        try:
            if not target.startswith("/"):
                raise Denied("the request target must be a path")
            host = self.headers.get("Host")
            if not host:
                raise Denied("no Host header")
            key_id = server.distribution.authorize(
                target, host, self.headers.get_all("Cookie", []),
                client_address(self, server.trust_forwarded_for), time.time())
        except Denied as denied:
            self.deny(str(denied))
            return
        path, query = split_target(target)
        try:
            key = urllib.parse.unquote(path[1:], errors="strict")
        except UnicodeDecodeError:
            self.send_text(400, "BadRequest: the path is not UTF-8 once percent-decoded")
            return
        self.log_decision("allow", f"key id {key_id}")
        self.forward(key, split_query(query)[0], key_id)

    def forward(self, key, kept_query, key_id):
        try:
            response = self.server.origin.open(self.command, key, kept_query,
                                               self.headers.get("Range"))
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 404:
                self.send_text(404, "NotFound: the origin has no such object")
            else:
                self.send_text(502, f"BadGateway: the origin answered {err.code}")
            return
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            self.send_text(502, f"BadGateway: the origin is unreachable ({reason})")
            return
        with response:
            self.relay(response, key_id)

    def relay(self, response, key_id):
        self.send_response(response.status)
        for name in ORIGIN_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                self.send_header(name, value)
        self.send_header("X-Edge-Verified", key_id)
        if response.headers.get("Content-Length") is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            shutil.copyfileobj(response, self.wfile, CHUNK_BYTES)
        except OSError as err:  # the client went away, or the origin broke off
            self.close_connection = True
            self.log_decision("abort", f"body relay stopped: {err.__class__.__name__}")

    def deny(self, reason):
        reason = header_safe(reason)
        self.log_decision("deny", reason)
        self.send_text(403, f"AccessDenied: {reason}", {"X-Edge-Reason": reason})

    def send_text(self, status, line, headers=None):
        body = (line + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_decision(self, decision, detail):
        path = header_safe(self.raw_path(), limit=500)
        sys.stderr.write(f"{self.command} {path} {decision}: {detail}\n")

    def log_request(self, code="-", size="-"):
        pass  # the request line holds the signature; log_decision covers requests

    def log_message(self, format, *args):
        sys.stderr.write(f"edge: {format % args}\n")


class EdgeServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, distribution, origin, trust_forwarded_for):
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, EdgeHandler)
        self.distribution = distribution
        self.origin = origin
        self.trust_forwarded_for = trust_forwarded_for


# --- command line ----------------------------------------------------------

def load_public_key(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_public_key(f.read())
    if isinstance(key, rsa.RSAPublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError(f"{path}: only RSA and EC P-256 public keys are supported")


def trusted_keys(specs, flag):
    """{id: public key} from ID=PEM_FILE arguments."""
    keys = {}
    for spec in specs:
        key_id, sep, path = spec.partition("=")
        if not sep or not key_id or not path:
            raise SystemExit(f"{flag} wants ID=PUBLIC_KEY_PEM_FILE, got {spec!r}")
        try:
            keys[key_id] = load_public_key(path)
        except (OSError, ValueError) as err:
            raise SystemExit(f"{flag} {key_id}: {err}") from None
    return keys


def listen_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Stand-in CloudFront edge for tests.")
    parser.add_argument("--listen", type=listen_address, required=True)
    parser.add_argument("--origin", required=True, help="S3 endpoint URL")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--trusted-key-group", action="append", default=[], metavar="ID=PEM")
    parser.add_argument("--trusted-signer", action="append", default=[], metavar="ID=PEM")
    parser.add_argument("--trust-forwarded-for", action="store_true")
    parser.add_argument("--scheme", default="http")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    key_groups = trusted_keys(args.trusted_key_group, "--trusted-key-group")
    signers = trusted_keys(args.trusted_signer, "--trusted-signer")
    # As CloudFront: key groups hold uploaded public keys (K... ids, RSA 2048
    # or ECDSA P-256); trusted signers are root-account key pairs (APKA...
    # ids, RSA).
    for key_id, key in key_groups.items():
        if key_id.startswith("APKA") or not key_id.startswith("K"):
            raise SystemExit(f"--trusted-key-group {key_id}: key group public key ids start with K")
    for key_id, key in signers.items():
        if not key_id.startswith("APKA"):
            raise SystemExit(f"--trusted-signer {key_id}: trusted signer key pair ids start with APKA")
        if not isinstance(key, rsa.RSAPublicKey):
            raise SystemExit(f"--trusted-signer {key_id}: CloudFront key pairs are RSA")
    shared = set(key_groups) & set(signers)
    if shared:
        raise SystemExit(f"ids given both as key group and trusted signer: {sorted(shared)}")
    access_key, secret_key = os.environ.get("ORIGIN_ACCESS_KEY"), os.environ.get("ORIGIN_SECRET_KEY")
    if not access_key or not secret_key:
        raise SystemExit("set ORIGIN_ACCESS_KEY and ORIGIN_SECRET_KEY")
    origin = Origin(args.origin, args.bucket, args.region, access_key, secret_key)
    distribution = Distribution(key_groups, signers, args.scheme)
    server = EdgeServer(args.listen, distribution, origin, args.trust_forwarded_for)
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
