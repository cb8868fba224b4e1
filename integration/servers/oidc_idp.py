#!/usr/bin/env python3
"""A small OpenID Connect identity provider for the web-identity tests.

Ceph RGW's AssumeRoleWithWebIdentity checks a JWT against the JWKS of the
issuer named in the token, and trusts the issuer through an IAM OIDC
provider whose thumbprint is the SHA-1 of the signing certificate. This
script holds a key and a self-signed certificate in a state directory and:

  serve --state DIR --port PORT   serve discovery + JWKS over HTTP on 127.0.0.1
  thumb --state DIR               print the certificate thumbprint
  mint  --state DIR --port PORT [--sub S] [--aud A] [--ttl SECONDS]
                                  print a signed RS256 token (negative ttl: expired)
  register --state DIR --port PORT --endpoint URL --client-id ID
                                  create the IAM OIDC provider in RGW (admin keys
                                  from STOWAGE_RGW_ADMIN_ACCESS_KEY/_SECRET_KEY)

Needs pyjwt and cryptography (integration/servers/install.sh installs them).
"""
import argparse
import base64
import datetime
import hashlib
import http.server
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
import jwt

KID = "stowage-test-key"


def issuer(port):
    return f"http://127.0.0.1:{port}"


def load_or_create(state):
    """The signing key and certificate in STATE, made on first use."""
    os.makedirs(state, exist_ok=True)
    key_path, cert_path = os.path.join(state, "key.pem"), os.path.join(state, "cert.pem")
    if not os.path.exists(key_path):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stowage test identity provider")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        with open(key_path + ".tmp", "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        os.replace(key_path + ".tmp", key_path)
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return key, cert


def b64url_uint(n):
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def thumbprint(cert):
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()


def documents(key, cert, port):
    numbers = key.public_key().public_numbers()
    der = cert.public_bytes(serialization.Encoding.DER)
    jwks = {"keys": [{"kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                      "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e),
                      "x5c": [base64.b64encode(der).decode()]}]}
    discovery = {"issuer": issuer(port), "jwks_uri": issuer(port) + "/jwks",
                 "id_token_signing_alg_values_supported": ["RS256"],
                 "response_types_supported": ["id_token"], "subject_types_supported": ["public"]}
    return {"/.well-known/openid-configuration": discovery, "/jwks": jwks}


def serve(args):
    key, cert = load_or_create(args.state)
    docs = {path: json.dumps(doc).encode() for path, doc in documents(key, cert, args.port).items()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = docs.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            sys.stderr.write("oidc: " + (fmt % a) + "\n")

    http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


def mint(args):
    key, _ = load_or_create(args.state)
    now = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
    claims = {"iss": issuer(args.port), "sub": args.sub, "aud": args.aud, "azp": args.aud,
              "iat": now - 5, "nbf": now - 5, "exp": now + args.ttl}
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID}))


def register(args):
    import boto3
    from botocore.config import Config

    _, cert = load_or_create(args.state)
    iam = boto3.client("iam", endpoint_url=args.endpoint, region_name="us-east-1",
                       aws_access_key_id=os.environ["STOWAGE_RGW_ADMIN_ACCESS_KEY"],
                       aws_secret_access_key=os.environ["STOWAGE_RGW_ADMIN_SECRET_KEY"],
                       config=Config(retries={"max_attempts": 2}))
    arn = iam.create_open_id_connect_provider(Url=issuer(args.port), ClientIDList=[args.client_id],
                                              ThumbprintList=[thumbprint(cert)])
    print(arn["OpenIDConnectProviderArn"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "thumb", "mint", "register"):
        p = sub.add_parser(name)
        p.add_argument("--state", required=True)
        p.add_argument("--port", type=int, default=18080)
        if name == "mint":
            p.add_argument("--sub", default="registry")
            p.add_argument("--aud", default="stowage-test")
            p.add_argument("--ttl", type=int, default=3600)
        if name == "register":
            p.add_argument("--endpoint", required=True)
            p.add_argument("--client-id", default="stowage-test")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
    elif args.command == "thumb":
        print(thumbprint(load_or_create(args.state)[1]))
    elif args.command == "mint":
        mint(args)
    else:
        register(args)


if __name__ == "__main__":
    main()
