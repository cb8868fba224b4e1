#!/usr/bin/env python3
"""Self-test of edge_verifier.py, without S3: `python3 test_edge_verifier.py`.

Generates RSA-2048 and EC P-256 keys, starts a dummy origin (serves fixed
bytes for any key under /BUCKET/ and records what it was asked) and two
edges: one distribution with trusted key groups (RSA and EC, trusting
X-Forwarded-For) and one with a legacy trusted signer (RSA). URLs and
cookies are signed here in Python, and once through botocore_oracle.py, and
the edges' answers checked. Exits nonzero when a check fails.
"""
import base64
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = "edge-bucket"
BODY = bytes(range(256)) * 4
RSA_GROUP_ID = "K2JCJMDEHXQW5F"
EC_GROUP_ID = "K3ECP256EXAMPLE"
SIGNER_ID = "APKAEIBAERJR2EXAMPLE"


# --- signing, written independently of the verifier -------------------------

def cf_b64(data):
    return base64.b64encode(data).decode().translate(str.maketrans("+=/", "-_~"))


def sign(key, message, hash_name="SHA1"):
    algorithm = hashes.SHA256() if hash_name == "SHA256" else hashes.SHA1()
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), algorithm)
    return key.sign(message, ec.ECDSA(algorithm))


def canned_params(resource, key_id, key, expires, hash_name=None):
    policy = ('{"Statement":[{"Resource":%s,"Condition":{"DateLessThan":{"AWS:EpochTime":%d}}}]}'
              % (json.dumps(resource), expires))
    params = {"Expires": str(expires), "Signature": cf_b64(sign(key, policy.encode(), hash_name)),
              "Key-Pair-Id": key_id}
    if hash_name:
        params["Hash-Algorithm"] = hash_name
    return params


def custom_params(statement, key_id, key, hash_name=None):
    policy = json.dumps({"Statement": [statement]}).encode()
    params = {"Policy": cf_b64(policy), "Signature": cf_b64(sign(key, policy, hash_name)),
              "Key-Pair-Id": key_id}
    if hash_name:
        params["Hash-Algorithm"] = hash_name
    return params


def statement(resource, not_after, not_before=None, cidr=None):
    condition = {"DateLessThan": {"AWS:EpochTime": not_after}}
    if not_before is not None:
        condition["DateGreaterThan"] = {"AWS:EpochTime": not_before}
    if cidr is not None:
        condition["IpAddress"] = {"AWS:SourceIp": cidr}
    return {"Resource": resource, "Condition": condition}


def with_params(target, params):
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return target + ("&" if "?" in target else "?") + query


def as_cookies(params):
    return "; ".join(f"CloudFront-{name}={value}" for name, value in params.items())


# --- the dummy origin -------------------------------------------------------

class DummyOrigin(BaseHTTPRequestHandler):
    """Any key under /BUCKET/ is BODY, except keys ending in "missing" (404) and "broken" (500)."""
    protocol_version = "HTTP/1.1"
    seen = []  # (method, key, query, Range header) per request

    def do_GET(self):
        path, _, query = self.path.partition("?")
        key = urllib.parse.unquote(path[len(f"/{BUCKET}/"):])
        DummyOrigin.seen.append((self.command, key, query, self.headers.get("Range")))
        if not path.startswith(f"/{BUCKET}/") or key.endswith("missing"):
            return self.reply(404, b"")
        if key.endswith("broken"):
            return self.reply(500, b"")
        ranged = self.headers.get("Range")
        if ranged:
            first, last = (int(n) for n in ranged.removeprefix("bytes=").split("-"))
            return self.reply(206, BODY[first:last + 1],
                              {"Content-Range": f"bytes {first}-{last}/{len(BODY)}"})
        self.reply(200, BODY)

    do_HEAD = do_GET

    def reply(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("ETag", '"dummy-etag"')
        self.send_header("Accept-Ranges", "bytes")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def start_origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), DummyOrigin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the edges --------------------------------------------------------------

class Edge:
    def __init__(self, origin_port, flags, log_path):
        env = dict(os.environ, ORIGIN_ACCESS_KEY="test-access", ORIGIN_SECRET_KEY="test-secret-key")
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "edge_verifier.py"), "--listen", "127.0.0.1:0",
             "--origin", f"http://127.0.0.1:{origin_port}", "--bucket", BUCKET, *flags],
            stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        line = self.process.stdout.readline().split()
        assert len(line) == 2 and line[0] == "ready", f"edge did not start: {line}"
        self.port = int(line[1])

    def url(self, target):
        return f"http://127.0.0.1:{self.port}{target}"

    def request(self, target, headers=None, method="GET"):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, target, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.log.close()


class Keys:
    def __init__(self, directory):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.paths = {}
        for name in ("rsa", "ec", "signer"):
            key = getattr(self, name)
            public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            private = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
            self.paths[name] = os.path.join(directory, f"{name}.pub.pem")
            self.paths[name + "-private"] = os.path.join(directory, f"{name}.pem")
            with open(self.paths[name], "wb") as f:
                f.write(public)
            with open(self.paths[name + "-private"], "wb") as f:
                f.write(private)


# --- the checks -------------------------------------------------------------

def expect(answer, status, body=None, reason=None):
    got_status, headers, got_body = answer
    assert got_status == status, f"status {got_status} != {status}: {got_body[:60]!r}"
    if body is not None:
        assert got_body == body, f"body differs ({len(got_body)} bytes)"
    if status == 403:
        assert headers.get("Content-Type") == "text/plain", headers
        assert got_body.decode().startswith("AccessDenied: "), got_body
        assert got_body.decode().strip() == f"AccessDenied: {headers['X-Edge-Reason']}"
    if reason is not None:
        assert reason in headers.get("X-Edge-Reason", ""), headers.get("X-Edge-Reason")
    return headers


class Suite:
    def __init__(self, keys, groups, signers):
        self.keys, self.groups, self.signers = keys, groups, signers
        self.now = int(time.time())
        self.later = self.now + 3600

    def canned(self, edge, target, key_id=RSA_GROUP_ID, key=None, expires=None, hash_name=None,
               signed_target=None):
        resource = edge.url(signed_target or target)
        params = canned_params(resource, key_id, key or self.keys.rsa, expires or self.later,
                               hash_name)
        return with_params(target, params)

    def test_health(self):
        expect(self.groups.request("/__edge/health"), 200, b"ok\n")

    def test_canned_rsa_sha1(self):
        headers = expect(self.groups.request(self.canned(self.groups, "/blobs/sha256/abc")), 200, BODY)
        assert headers["X-Edge-Verified"] == RSA_GROUP_ID
        assert headers["ETag"] == '"dummy-etag"' and headers["Content-Length"] == str(len(BODY))
        method, key, query, _ = DummyOrigin.seen[-1]
        assert (method, key) == ("GET", "blobs/sha256/abc")
        assert "X-Amz-Signature=" in query and "X-Amz-Credential=test-access" in query

    def test_head(self):
        answer = self.groups.request(self.canned(self.groups, "/blobs/h"), method="HEAD")
        headers = expect(answer, 200, b"")
        assert headers["Content-Length"] == str(len(BODY))
        assert DummyOrigin.seen[-1][0] == "HEAD"

    def test_range(self):
        answer = self.groups.request(self.canned(self.groups, "/blobs/r"), {"Range": "bytes=10-19"})
        headers = expect(answer, 206, BODY[10:20])
        assert headers["Content-Range"] == f"bytes 10-19/{len(BODY)}"

    def test_expired(self):
        target = self.canned(self.groups, "/blobs/x", expires=self.now - 5)
        expect(self.groups.request(target), 403, reason="expired")

    def test_tampered_signature(self):
        target = self.canned(self.groups, "/blobs/x")
        head, sig = target.split("Signature=")
        tampered = head + "Signature=" + ("A" if sig[0] != "A" else "B") + sig[1:]
        expect(self.groups.request(tampered), 403, reason="signature")

    def test_tampered_path(self):
        target = self.canned(self.groups, "/blobs/y", signed_target="/blobs/x")
        expect(self.groups.request(target), 403, reason="signature")

    def test_unknown_id(self):
        target = self.canned(self.groups, "/blobs/x", key_id="K000UNKNOWN0000")
        expect(self.groups.request(target), 403, reason="K000UNKNOWN0000 is not trusted")

    def test_key_group_distribution_refuses_signer_id(self):
        target = self.canned(self.groups, "/blobs/x", key_id=SIGNER_ID, key=self.keys.signer)
        expect(self.groups.request(target), 403, reason=f"key id {SIGNER_ID} is not trusted")

    def test_signer_distribution(self):
        target = self.canned(self.signers, "/blobs/x", key_id=SIGNER_ID, key=self.keys.signer)
        headers = expect(self.signers.request(target), 200, BODY)
        assert headers["X-Edge-Verified"] == SIGNER_ID
        target = self.canned(self.signers, "/blobs/x")
        expect(self.signers.request(target), 403, reason=f"{RSA_GROUP_ID} is not trusted")

    def test_missing_pieces(self):
        target = self.canned(self.groups, "/blobs/x")
        without_id = target.split("&Key-Pair-Id=")[0]
        expect(self.groups.request(without_id), 403, reason="Key-Pair-Id")
        expect(self.groups.request("/blobs/x"), 403, reason="Signature")
        expires = target.split("Expires=")[1].split("&")[0]
        expect(self.groups.request(f"/blobs/x?Expires={expires}&Key-Pair-Id={RSA_GROUP_ID}"), 403)

    def test_ec_keys(self):
        for hash_name in (None, "SHA256"):
            target = self.canned(self.groups, "/blobs/ec", key_id=EC_GROUP_ID, key=self.keys.ec,
                                 hash_name=hash_name)
            expect(self.groups.request(target), 200, BODY)
        target = self.canned(self.groups, "/blobs/ec", key_id=EC_GROUP_ID, key=self.keys.rsa)
        expect(self.groups.request(target), 403, reason="signature")

    def test_sha256(self):
        target = self.canned(self.groups, "/blobs/s", hash_name="SHA256")
        expect(self.groups.request(target), 200, BODY)
        sha1_as_sha256 = self.canned(self.groups, "/blobs/s") + "&Hash-Algorithm=SHA256"
        expect(self.groups.request(sha1_as_sha256), 403, reason="signature")
        md5 = self.canned(self.groups, "/blobs/s") + "&Hash-Algorithm=MD5"
        expect(self.groups.request(md5), 403, reason="Hash-Algorithm")

    def custom(self, edge, target, stmt, key_id=RSA_GROUP_ID, key=None, hash_name=None):
        return with_params(target, custom_params(stmt, key_id, key or self.keys.rsa, hash_name))

    def test_custom_wildcards(self):
        edge = self.groups
        star = statement(edge.url("/blobs/*"), self.later)
        for target in ("/blobs/a", "/blobs/", "/blobs/a/b/c", "/blobs/q?x=1"):
            expect(edge.request(self.custom(edge, target, star)), 200, BODY)
        expect(edge.request(self.custom(edge, "/other/a", star)), 403, reason="Resource")
        one = statement(edge.url("/blobs/a?c"), self.later)
        expect(edge.request(self.custom(edge, "/blobs/abc", one)), 200, BODY)
        expect(edge.request(self.custom(edge, "/blobs/abbc", one)), 403, reason="Resource")
        exact = statement(edge.url("/blobs/exact"), self.later, cidr=None)
        expect(edge.request(self.custom(edge, "/blobs/exact", exact, EC_GROUP_ID, self.keys.ec,
                                        "SHA256")), 200, BODY)

    def test_custom_expired(self):
        stmt = statement(self.groups.url("/blobs/*"), self.now - 1)
        expect(self.groups.request(self.custom(self.groups, "/blobs/a", stmt)), 403, reason="expired")

    def test_custom_ip(self):
        edge, stmt = self.groups, statement(self.groups.url("/blobs/*"), self.later, cidr="10.1.0.0/16")
        target = self.custom(edge, "/blobs/ip", stmt)
        expect(edge.request(target, {"X-Forwarded-For": "10.1.2.3, 127.0.0.1"}), 200, BODY)
        expect(edge.request(target, {"X-Forwarded-For": "10.2.0.1"}), 403, reason="10.2.0.1 is outside")
        expect(edge.request(target), 403, reason="127.0.0.1 is outside")
        v6 = self.custom(edge, "/blobs/ip", statement(edge.url("/blobs/*"), self.later,
                                                     cidr="2001:db8::/32"))
        expect(edge.request(v6, {"X-Forwarded-For": "2001:db8::7"}), 200, BODY)
        expect(edge.request(v6, {"X-Forwarded-For": "2001:db9::7"}), 403, reason="outside")

    def test_custom_not_before(self):
        edge = self.groups
        future = statement(edge.url("/blobs/*"), self.later, not_before=self.now + 600)
        expect(edge.request(self.custom(edge, "/blobs/nb", future)), 403, reason="not valid before")
        past = statement(edge.url("/blobs/*"), self.later, not_before=self.now - 600)
        expect(edge.request(self.custom(edge, "/blobs/nb", past)), 200, BODY)

    def test_custom_without_date_less_than(self):
        stmt = {"Resource": self.groups.url("/blobs/*"), "Condition": {}}
        expect(self.groups.request(self.custom(self.groups, "/blobs/a", stmt)), 403,
               reason="DateLessThan")

    def test_query_params_kept(self):
        edge, target = self.groups, "/blobs/q?versionId=7&a=b%20c"
        expect(edge.request(self.canned(edge, target)), 200, BODY)
        unsigned_params = self.canned(edge, target, signed_target="/blobs/q")
        expect(edge.request(unsigned_params), 403, reason="signature")
        signed = self.canned(edge, "/blobs/q?a=1&b=2")
        path, query = signed.split("?")
        middle = query.replace("a=1&b=2&", "a=1&") + "&b=2"  # signing params between the others
        expect(edge.request(f"{path}?{middle}"), 200, BODY)

    def test_response_overrides(self):
        target = "/blobs/o?response-content-disposition=attachment%3B%20filename%3Dx.bin"
        expect(self.groups.request(self.canned(self.groups, target)), 200, BODY)
        query = urllib.parse.parse_qs(DummyOrigin.seen[-1][2])
        assert query["response-content-disposition"] == ["attachment; filename=x.bin"], query

    def test_special_path(self):
        target = "/blobs/a%20b%2Fc=d@e,f%C3%A9"
        expect(self.groups.request(self.canned(self.groups, target)), 200, BODY)
        assert DummyOrigin.seen[-1][1] == "blobs/a b/c=d@e,f\u00e9", DummyOrigin.seen[-1]
        leading = "//blobs/leading-slash"
        expect(self.groups.request(self.canned(self.groups, leading)), 200, BODY)
        assert DummyOrigin.seen[-1][1] == "/blobs/leading-slash", DummyOrigin.seen[-1]

    def test_cookies(self):
        edge = self.groups
        canned = canned_params(edge.url("/blobs/c"), RSA_GROUP_ID, self.keys.rsa, self.later)
        expect(edge.request("/blobs/c", {"Cookie": as_cookies(canned)}), 200, BODY)
        stmt = statement(edge.url("/blobs/*"), self.later)
        custom = custom_params(stmt, EC_GROUP_ID, self.keys.ec, "SHA256")
        expect(edge.request("/blobs/any", {"Cookie": "other=1; " + as_cookies(custom)}), 200, BODY)
        expect(edge.request("/blobs/other", {"Cookie": as_cookies(canned)}), 403, reason="signature")
        untrusted = dict(canned, **{"Key-Pair-Id": SIGNER_ID})
        expect(edge.request("/blobs/c", {"Cookie": as_cookies(untrusted)}), 403, reason="not trusted")

    def test_origin_errors(self):
        expect(self.groups.request(self.canned(self.groups, "/blobs/missing")), 404)
        status, _, body = self.groups.request(self.canned(self.groups, "/blobs/broken"))
        assert status == 502 and b"500" in body, (status, body)

    def test_other_methods(self):
        expect(self.groups.request(self.canned(self.groups, "/blobs/x"), method="PUT"), 403,
               reason="method PUT")

    def test_botocore_oracle_accepted(self):
        edge = self.signers
        base = {"key_id": SIGNER_ID, "private_key": self.keys.paths["signer-private"],
                "expires": self.later, "not_before": None, "ip": None, "resource": None}
        cases = [
            dict(base, url=edge.url("/blobs/a%20b?x=1"), policy="canned", cookies=False),
            dict(base, url=edge.url("/blobs/c"), policy="custom", cookies=False,
                 resource=edge.url("/blobs/*"), not_before=self.now - 60, ip="127.0.0.1"),
            dict(base, url=edge.url("/blobs/d"), policy="canned", cookies=True),
            dict(base, url=edge.url("/blobs/e"), policy="custom", cookies=True, ip="10.9.9.9"),
        ]
        results = json.loads(subprocess.run(
            [sys.executable, os.path.join(HERE, "botocore_oracle.py"), "sign"],
            input=json.dumps(cases), capture_output=True, text=True, check=True).stdout)
        prefix = edge.url("")
        expect(edge.request(results[0]["url"].removeprefix(prefix)), 200, BODY)
        expect(edge.request(results[1]["url"].removeprefix(prefix)), 200, BODY)
        cookie = "; ".join(f"{name}={value}" for name, value in results[2]["cookies"])
        expect(edge.request("/blobs/d", {"Cookie": cookie}), 200, BODY)
        cookie = "; ".join(f"{name}={value}" for name, value in results[3]["cookies"])
        expect(edge.request("/blobs/e", {"Cookie": cookie}), 403, reason="outside")


def check_logs(paths):
    for path in paths:
        with open(path) as f:
            log = f.read()
        assert "Signature=" not in log and "test-secret-key" not in log, f"{path} leaks"
        assert " deny: " in log and " allow: " in log, f"{path} lacks decisions"


def run(suite):
    failures = []
    for name in sorted(n for n in dir(suite) if n.startswith("test_")):
        try:
            getattr(suite, name)()
            print(f"ok    {name}")
        except Exception as err:  # report every failing check, then fail the run
            failures.append(name)
            print(f"FAIL  {name}: {err.__class__.__name__}: {err}")
    return failures


def main():
    with tempfile.TemporaryDirectory() as directory:
        keys = Keys(directory)
        origin = start_origin()
        port = origin.server_address[1]
        logs = [os.path.join(directory, "groups.log"), os.path.join(directory, "signers.log")]
        groups = Edge(port, ["--trusted-key-group", f"{RSA_GROUP_ID}={keys.paths['rsa']}",
                             "--trusted-key-group", f"{EC_GROUP_ID}={keys.paths['ec']}",
                             "--trust-forwarded-for"], logs[0])
        signers = Edge(port, ["--trusted-signer", f"{SIGNER_ID}={keys.paths['signer']}"], logs[1])
        try:
            failures = run(Suite(keys, groups, signers))
        finally:
            groups.stop()
            signers.stop()
            origin.shutdown()
        try:
            check_logs(logs)
            print("ok    logs")
        except AssertionError as err:
            failures.append("logs")
            print(f"FAIL  logs: {err}")
    print(f"{len(failures)} failed" if failures else "all passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
