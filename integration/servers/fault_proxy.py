#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real S3 server, for tests.

Forwards every request to the upstream server unchanged (method, path,
query, headers including Host, so SigV4 signatures stay valid, and body),
streaming bodies both ways, and injects the faults it is told to:

  --fail-complete N          answer the first N CompleteMultipartUpload
                             requests (POST with an uploadId) itself, the way
                             S3 sometimes does: HTTP 200 with an InternalError
                             document. Not forwarded: the upload stays open.
  --drop-complete-answers N  forward the first N CompleteMultipartUpload
                             requests, read the server's answer, then reset
                             the client's connection instead of relaying it:
                             the upload is completed, the client never hears.
  --reset-up-every BYTES     reset the client's connection (TCP RST) each time
                             the request bodies relayed upstream, all
                             connections together, cross another multiple of
                             BYTES ("connection reset by peer" mid-upload).
  --reset-down-every BYTES   the same for response bodies relayed to clients.
  --corrupt-up-every BYTES   flip one byte of the request bodies relayed
                             upstream each time they cross another multiple
                             of BYTES (a part damaged on the wire).
  --slowdown-fraction F      answer a random fraction F of requests with
                             503 SlowDown, without forwarding them.
  --slowdown-style s3|azure  s3 (default): 503 SlowDown. azure: Azure
                             Storage's throttling answers, drawn in turn:
                             503 ServerBusy, 429 TooManyRequests and 500
                             OperationTimedOut, each with its
                             x-ms-error-code header and XML error body.
  --stall-fraction F         hold a random fraction F of requests for
                             --stall-seconds before forwarding them.
  --stall-down-every BYTES   stop relaying a response body for
                             --stall-seconds each time response bytes cross
                             another multiple of BYTES.
  --list-token drop|repeat   drop: remove the NextContinuationToken of
                             truncated ListObjectsV2 answers; repeat: answer
                             a page asked for with a token as truncated, with
                             that same token as the next one (a server that
                             repeats a token).
  --drop-abort-answers N     forward the first N AbortMultipartUpload
                             requests (DELETE with an uploadId), then reset
                             the client's connection instead of relaying
                             the answer: the upload is gone, the client
                             never hears.
  --ignore-range             answer GETs of objects that carry a Range with
                             the whole object (HTTP 200, no Content-Range),
                             as a server, proxy or CDN that ignores Range
                             does. The proxy fetches the object itself, signed
                             with the keys in PROXY_ACCESS_KEY /
                             PROXY_SECRET_KEY (region PROXY_REGION), since
                             the client signed its Range header.
  --delay-copies-seconds S   hold CopyObject requests, and UploadPartCopy
                             requests of parts 2 and later, S seconds before
                             forwarding them (a copy that takes a while).
  --delay-heads-seconds S    hold HEAD requests S seconds before forwarding.
  --throttle-bytes-per-second BYTES
                             pace the request bodies relayed upstream (those
                             with a Content-Length), all connections
                             together, to BYTES per second: a slow uplink.
  --refuse-gcs-unsupported   answer what Google Cloud Storage's XML API
                             refuses the way it refuses it, without
                             forwarding (docs/gcs.md has the sources): a
                             query parameter GCS does not know (the SDK's
                             x-id) with 400 InvalidArgument "Invalid query
                             parameter(s): [x-id]"; POST ?delete
                             (DeleteObjects) with 400 NotImplemented; and,
                             with the same NotImplemented answer,
                             UploadPartCopy (a part PUT with
                             x-amz-copy-source), ListObjectsV2 (list-type=2,
                             which Quay takes GCS to lack) and If-Match /
                             If-None-Match on multipart requests. Each is
                             counted in gcs_refused (and gcs_refused_<kind>).
                             With the keys of --ignore-range, a DELETE of a
                             missing object is answered 404 NoSuchKey, as
                             GCS does (S3 servers answer 204), counted in
                             gcs_missing_deletes.
  --seed N                   seed of the random choices (default 1).
  --tls-cert FILE --tls-key FILE
                             listen with TLS (HTTPS) with this certificate
                             chain and key (PEM); the upstream stays as
                             given. A client that refuses the certificate
                             is dropped without disturbing the others.

BYTES accept suffixes K, M, G (powers of 1024). Faults are off when their
option is 0 or absent, and can be changed while running:
POST /__proxy/config?reset_up_every=31457280&slowdown_fraction=0.2 (names as
the options, with underscores). GET /__proxy/stats answers JSON counters:
{"requests", "complete_seen", "complete_failed", "complete_dropped",
"resets_up", "resets_down", "corrupted", "slowdowns", "stalls", "list_tampered",
"abort_dropped", "ranges_ignored", "copies_delayed", "heads_delayed",
"gcs_refused", "gcs_refused_query", "gcs_refused_delete_objects",
"gcs_refused_part_copy", "gcs_refused_list_v2", "gcs_refused_preconditions",
"gcs_missing_deletes"}.

CLI:
  fault_proxy.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:7480 [faults]
Prints `ready PORT` when listening.
"""

import argparse
import http.client
import json
import os
import random
import re
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

INTERNAL_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                  b"<Error><Code>InternalError</Code>"
                  b"<Message>We encountered an internal error. Please try again.</Message>"
                  b"<RequestId>fault-proxy</RequestId></Error>")

# Azure Storage's throttling and timeout answers (status, code, message).
AZURE_THROTTLING = [
    (503, "ServerBusy", "The server is currently unable to receive requests. Please retry."),
    (429, "TooManyRequests", "The request rate is too high. Please retry."),
    (500, "OperationTimedOut", "The operation could not be completed within the permitted time."),
]

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
             b"<Error><Code>SlowDown</Code>"
             b"<Message>Please reduce your request rate.</Message>"
             b"<RequestId>fault-proxy</RequestId></Error>")

# --refuse-gcs-unsupported: the query parameters GCS's XML API documents
# (https://cloud.google.com/storage/docs/xml-api/reference-headers), besides
# the X-Goog-* and X-Amz-* ones of signed URLs; it refuses any other.
GCS_QUERY_PARAMETERS = {
    "AccessKeyId", "acl", "Action", "billing", "compose", "continuation-token", "cors",
    "customPlacementConfig", "defaultObjectAcl", "delimiter", "encoding-type", "encryption",
    "encryptionConfig", "Expires", "fetch-owner", "generation", "generation-marker",
    "GoogleAccessId", "key-marker", "lifecycle", "list-type", "location", "logging", "marker",
    "Marker", "max-keys", "max-parts", "max-uploads", "MaxItems", "object-lock",
    "part-number-marker", "partNumber", "prefix", "response-content-disposition",
    "response-content-type", "retention", "Signature", "start-after", "Status", "storageClass",
    "tagging", "upload_id", "upload-id-marker", "uploadId", "uploads", "UserName", "userProject",
    "version-id-marker", "versioning", "versions", "websiteConfig",
}

# GCS's answer to what it does not implement (as seen for POST ?delete).
GCS_NOT_IMPLEMENTED = "A header or query you provided requested a function that is not implemented."


def gcs_error(code, message, details):
    """An error document in GCS's form (Code, Message, Details)."""
    return ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>%s</Message>"
            "<Details>%s</Details></Error>" % (code, escape(message), escape(details))).encode()


GCS_NO_SUCH_KEY = gcs_error("NoSuchKey", "The specified key does not exist.",
                            "No such object (a DELETE of a missing object, as GCS answers it)")


def gcs_refusal(method, split, headers):
    """(counter, error document) of GCS's refusal of a request, or None
    when GCS serves it."""
    query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
    if method == "POST" and "delete" in query:
        return "gcs_refused_delete_objects", gcs_error(
            "NotImplemented", GCS_NOT_IMPLEMENTED, "POST ?delete is not implemented for objects.")
    if method == "PUT" and "uploadId" in query and headers.get("x-amz-copy-source"):
        return "gcs_refused_part_copy", gcs_error(
            "NotImplemented", GCS_NOT_IMPLEMENTED,
            "x-amz-copy-source is not implemented for object parts (UploadPartCopy).")
    if method == "GET" and query.get("list-type") == ["2"]:
        return "gcs_refused_list_v2", gcs_error(
            "NotImplemented", GCS_NOT_IMPLEMENTED, "list-type=2 (ListObjectsV2) is not implemented.")
    conditions = [h for h in ("If-Match", "If-None-Match", "x-goog-if-generation-match",
                              "x-goog-if-metageneration-match") if headers.get(h)]
    if ("uploads" in query or "uploadId" in query) and conditions:
        return "gcs_refused_preconditions", gcs_error(
            "NotImplemented", GCS_NOT_IMPLEMENTED,
            "Preconditions are not supported in multipart upload requests: %s."
            % ", ".join(conditions))
    unknown = sorted(name for name in query if name not in GCS_QUERY_PARAMETERS
                     and not name.lower().startswith(("x-goog-", "x-amz-")))
    if unknown:
        return "gcs_refused_query", gcs_error(
            "InvalidArgument", "Invalid argument.",
            "Invalid query parameter(s): [%s]" % ", ".join(unknown))
    return None


HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
              "expect"}

CHUNK = 64 * 1024

# Settings that can be changed at run time, with their types.
SETTINGS = {
    "fail_complete": int,
    "drop_complete_answers": int,
    "reset_up_every": int,
    "reset_down_every": int,
    "corrupt_up_every": int,
    "slowdown_fraction": float,
    "stall_fraction": float,
    "stall_seconds": float,
    "stall_down_every": int,
    "list_token": str,
    "throttle_bytes_per_second": int,
    "drop_abort_answers": int,
    "ignore_range": int,
    "delay_copies_seconds": float,
    "delay_heads_seconds": float,
    "refuse_gcs_unsupported": int,
    "slowdown_style": str,
}

COUNTERS = ["requests", "complete_seen", "complete_failed", "complete_dropped", "resets_up",
            "resets_down", "corrupted", "slowdowns", "stalls", "list_tampered", "abort_dropped",
            "ranges_ignored", "copies_delayed", "heads_delayed", "gcs_refused", "gcs_refused_query",
            "gcs_refused_delete_objects", "gcs_refused_part_copy", "gcs_refused_list_v2",
            "gcs_refused_preconditions", "gcs_missing_deletes", "azure_server_busy",
            "azure_too_many_requests", "azure_operation_timed_out"]


def parse_bytes(text):
    """`30M` -> 31457280; plain numbers are bytes."""
    text = str(text).strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    if scale != 1:
        text = text[:-1]
    return int(float(text) * scale)


class Faults:
    """What to inject, and what was injected; shared by all connections."""

    def __init__(self, settings, seed):
        self.lock = threading.Lock()
        self.settings = dict(settings)
        self.counts = {name: 0 for name in COUNTERS}
        self.random = random.Random(seed)
        self.up_bytes = 0
        self.corrupt_bytes = 0
        self.down_bytes = 0
        self.stall_down_bytes = 0
        self.throttle_next = 0.0

    def get(self, name):
        with self.lock:
            return self.settings.get(name) or 0

    def count(self, name):
        with self.lock:
            self.counts[name] += 1

    def configure(self, query):
        with self.lock:
            for name, values in urllib.parse.parse_qs(query).items():
                if name not in SETTINGS:
                    raise ValueError(f"unknown setting {name}")
                kind = SETTINGS[name]
                value = values[-1]
                if kind is int:
                    self.settings[name] = parse_bytes(value)
                else:
                    self.settings[name] = kind(value)
            return dict(self.settings)

    def stats(self):
        with self.lock:
            return dict(self.counts)

    def take(self, name):
        """Uses up one of a counted fault (`fail_complete`, ...)."""
        with self.lock:
            left = self.settings.get(name) or 0
            if left > 0:
                self.settings[name] = left - 1
                return True
            return False

    def next_throttle(self):
        """The index of the next Azure throttling answer, in turn."""
        with self.lock:
            self.throttles = getattr(self, "throttles", 0) + 1
            return (self.throttles - 1) % len(AZURE_THROTTLING)

    def chance(self, name):
        with self.lock:
            fraction = self.settings.get(name) or 0
            return fraction > 0 and self.random.random() < fraction

    def relay(self, direction, length):
        """How many of `length` bytes may pass before a reset ("up" or
        "down"), and whether the reset comes after them."""
        with self.lock:
            every = self.settings.get(f"reset_{direction}_every") or 0
            total = self.up_bytes if direction == "up" else self.down_bytes
            allowed, reset = length, False
            if every > 0:
                boundary = (total // every + 1) * every
                if total + length >= boundary:
                    allowed, reset = boundary - total, True
            if direction == "up":
                self.up_bytes += allowed
            else:
                self.down_bytes += allowed
            return allowed, reset

    def pace(self, length):
        """Sleeps until `length` more request-body bytes fit in
        --throttle-bytes-per-second, shared by all connections."""
        with self.lock:
            rate = self.settings.get("throttle_bytes_per_second") or 0
            if rate <= 0:
                return
            now = time.monotonic()
            self.throttle_next = max(now, self.throttle_next) + length / rate
            wait = self.throttle_next - now
        time.sleep(wait)

    def corrupt_at(self, length):
        """The offset in the next `length` request-body bytes of a byte to
        flip, or None."""
        with self.lock:
            every = self.settings.get("corrupt_up_every") or 0
            before = self.corrupt_bytes
            self.corrupt_bytes += length
            if every <= 0 or before // every == self.corrupt_bytes // every:
                return None
            self.counts["corrupted"] += 1
            return (before // every + 1) * every - before - 1

    def stall_after(self, length):
        """Whether relaying `length` more response bytes crosses a stall
        boundary."""
        with self.lock:
            every = self.settings.get("stall_down_every") or 0
            before = self.stall_down_bytes
            self.stall_down_bytes += length
            return every > 0 and before // every != self.stall_down_bytes // every


class Reset(Exception):
    """The client connection was reset on purpose."""


def make_handler(upstream, faults):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def azure_throttle(self):
            """Answers as Azure Storage does when it throttles: the next of
            ServerBusy (503), TooManyRequests (429) and OperationTimedOut
            (500), in turn, with the error code in a header and the body."""
            status, code, message = AZURE_THROTTLING[faults.next_throttle()]
            faults.count({"ServerBusy": "azure_server_busy",
                          "TooManyRequests": "azure_too_many_requests",
                          "OperationTimedOut": "azure_operation_timed_out"}[code])
            body = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code>'
                    "<Message>%s\nRequestId:fault-proxy</Message></Error>" % (code, escape(message))
                    ).encode()
            return self.reply(status, body, extra_headers={"x-ms-error-code": code})

        def reply(self, status, body, content_type="application/xml", extra_headers=None):
            self.send_response(status)
            for name, value in (extra_headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def reset(self, counter=None):
            """Resets the client's connection (RST, not FIN), counting it in
            `counter`, and ends the request."""
            if counter:
                faults.count(counter)
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                self.rfile.close()
            except Exception:
                pass
            try:
                self.connection.close()
            except OSError:
                pass
            self.close_connection = True
            raise Reset()

        def read_body(self, sink=None):
            """Reads the request body, passing each piece to `sink`; returns
            it whole when there is no sink. Chunked bodies are decoded."""
            pieces = []
            out = sink or pieces.append
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    out(self.rfile.read(size))
                    self.rfile.readline()
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left > 0:
                    piece = self.rfile.read(min(CHUNK, left))
                    if not piece:
                        raise ConnectionError("client closed mid-body")
                    left -= len(piece)
                    out(piece)
            return b"".join(pieces)

        def control(self, query):
            if self.path.startswith("/__proxy/stats"):
                return self.reply(200, json.dumps(faults.stats()).encode(), "application/json")
            if self.path.startswith("/__proxy/config"):
                self.read_body()
                try:
                    settings = faults.configure(query)
                except ValueError as e:
                    return self.reply(400, str(e).encode(), "text/plain")
                return self.reply(200, json.dumps(settings).encode(), "application/json")
            return self.reply(404, b"unknown proxy control path", "text/plain")

        def forward(self):
            try:
                self.handle_request()
            except Reset:
                pass
            except (ConnectionError, socket.timeout, OSError):
                self.close_connection = True

        def handle_request(self):
            split = urllib.parse.urlsplit(self.path)
            if split.path.startswith("/__proxy/"):
                return self.control(split.query)
            faults.count("requests")
            if faults.get("refuse_gcs_unsupported"):
                refused = gcs_refusal(self.command, split, self.headers)
                if refused:
                    counter, document = refused
                    self.read_body()
                    faults.count("gcs_refused")
                    faults.count(counter)
                    print(f"fault_proxy: refused as GCS does ({counter}): {self.command} "
                          f"{split.path}?{split.query}", file=sys.stderr, flush=True)
                    return self.reply(400, document)
                if self.command == "DELETE" and self.object_missing(split):
                    self.read_body()
                    faults.count("gcs_missing_deletes")
                    return self.reply(404, GCS_NO_SUCH_KEY)
            is_complete = self.command == "POST" and "uploadId=" in split.query
            if is_complete:
                faults.count("complete_seen")
                if faults.take("fail_complete"):
                    self.read_body()
                    faults.count("complete_failed")
                    print("fault_proxy: CompleteMultipartUpload answered 200 + InternalError",
                          file=sys.stderr, flush=True)
                    return self.reply(200, INTERNAL_ERROR)
            if faults.chance("slowdown_fraction"):
                self.read_body()
                faults.count("slowdowns")
                if faults.get("slowdown_style") == "azure":
                    return self.azure_throttle()
                return self.reply(503, SLOW_DOWN)
            if faults.chance("stall_fraction"):
                faults.count("stalls")
                time.sleep(faults.get("stall_seconds"))
            copy_source = self.headers.get("x-amz-copy-source")
            part = urllib.parse.parse_qs(split.query).get("partNumber", ["1"])[-1]
            if copy_source and faults.get("delay_copies_seconds") and (
                    "uploadId=" not in split.query or part != "1"):
                faults.count("copies_delayed")
                time.sleep(faults.get("delay_copies_seconds"))
            if self.command == "HEAD" and faults.get("delay_heads_seconds"):
                faults.count("heads_delayed")
                time.sleep(faults.get("delay_heads_seconds"))
            object_get = set(urllib.parse.parse_qs(split.query)) <= {"x-id"}
            if (faults.get("ignore_range") and self.command == "GET" and object_get
                    and self.headers.get("Range")):
                return self.whole_object(split)

            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=300)
            try:
                self.relay(conn, split, is_complete)
            finally:
                conn.close()

        def relay(self, conn, split, is_complete):
            chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            body = self.read_body() if chunked else None
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and not (chunked and name.lower() == "content-length"):
                    conn.putheader(name, value)
            if chunked:
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
            else:
                conn.endheaders()

                def up(piece):
                    faults.pace(len(piece))
                    flip = faults.corrupt_at(len(piece))
                    if flip is not None:
                        damaged = bytearray(piece)
                        damaged[flip] ^= 0x01
                        piece = bytes(damaged)
                    allowed, reset = faults.relay("up", len(piece))
                    conn.send(piece[:allowed])
                    if reset:
                        print("fault_proxy: reset a connection mid-request", file=sys.stderr,
                              flush=True)
                        self.reset("resets_up")

                self.read_body(up)
            response = conn.getresponse()
            if is_complete and faults.take("drop_complete_answers"):
                response.read()
                faults.count("complete_dropped")
                print("fault_proxy: CompleteMultipartUpload forwarded, answer dropped",
                      file=sys.stderr, flush=True)
                return self.reset()
            is_abort = self.command == "DELETE" and "uploadId=" in split.query
            if is_abort and faults.take("drop_abort_answers"):
                response.read()
                faults.count("abort_dropped")
                print("fault_proxy: AbortMultipartUpload forwarded, answer dropped",
                      file=sys.stderr, flush=True)
                return self.reset()
            headers = response.getheaders()
            length = response.getheader("Content-Length")
            no_body = self.command == "HEAD" or response.status in (204, 304)
            tamper = (faults.get("list_token") and self.command == "GET"
                      and "list-type=2" in split.query)
            if tamper or (length is None and not no_body):
                # Small answers (XML, chunked): read whole, maybe edit.
                data = response.read()
                if tamper:
                    data = self.tamper_listing(data, split.query)
                self.send_response(response.status, response.reason)
                for name, value in headers:
                    if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                        continue
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.relay_down(iter([data]) if data else iter([]))
                return
            self.send_response(response.status, response.reason)
            for name, value in headers:
                if name.lower() in HOP_BY_HOP:
                    continue
                self.send_header(name, value)
            self.end_headers()
            if no_body:
                return
            self.relay_down(iter(lambda: response.read(CHUNK), b""))

        def whole_object(self, split):
            """Answers a ranged GET with the whole object (200), fetched with
            the proxy's own signature; the client's other conditions
            (If-Match) are kept."""
            import botocore.auth
            import botocore.awsrequest
            import botocore.credentials
            url = f"{upstream.scheme}://{upstream.netloc}{split.path}"
            headers = {}
            if self.headers.get("If-Match"):
                headers["If-Match"] = self.headers.get("If-Match")
            request = botocore.awsrequest.AWSRequest(method="GET", url=url, headers=headers)
            credentials = botocore.credentials.Credentials(
                os.environ.get("PROXY_ACCESS_KEY", ""), os.environ.get("PROXY_SECRET_KEY", ""))
            botocore.auth.S3SigV4Auth(credentials, "s3",
                                      os.environ.get("PROXY_REGION", "us-east-1")).add_auth(request)
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=300)
            try:
                conn.putrequest("GET", split.path, skip_host=True, skip_accept_encoding=True)
                for name, value in request.headers.items():
                    conn.putheader(name, value)
                if "host" not in {k.lower() for k in request.headers.keys()}:
                    conn.putheader("Host", upstream.netloc)
                conn.endheaders()
                response = conn.getresponse()
                data = response.read()
                if response.status == 200:
                    faults.count("ranges_ignored")
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                        continue
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.relay_down(iter([data]) if data else iter([]))
            finally:
                conn.close()

        def object_missing(self, split):
            """Whether the object a DELETE (not of a multipart upload) names
            is missing, asked with a HEAD signed with PROXY_ACCESS_KEY /
            PROXY_SECRET_KEY (path-style: /bucket/key). False without keys,
            and whenever that HEAD does not answer 404."""
            if not os.environ.get("PROXY_ACCESS_KEY") or "uploadId" in split.query:
                return False
            bucket_and_key = split.path.lstrip("/").split("/", 1)
            if len(bucket_and_key) < 2 or not bucket_and_key[1]:
                return False
            import botocore.auth
            import botocore.awsrequest
            import botocore.credentials
            url = f"{upstream.scheme}://{upstream.netloc}{split.path}"
            request = botocore.awsrequest.AWSRequest(method="HEAD", url=url)
            credentials = botocore.credentials.Credentials(
                os.environ.get("PROXY_ACCESS_KEY", ""), os.environ.get("PROXY_SECRET_KEY", ""))
            botocore.auth.S3SigV4Auth(credentials, "s3",
                                      os.environ.get("PROXY_REGION", "us-east-1")).add_auth(request)
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                conn.putrequest("HEAD", split.path, skip_host=True, skip_accept_encoding=True)
                for name, value in request.headers.items():
                    conn.putheader(name, value)
                if "host" not in {k.lower() for k in request.headers.keys()}:
                    conn.putheader("Host", upstream.netloc)
                conn.endheaders()
                response = conn.getresponse()
                response.read()
                return response.status == 404
            except (OSError, http.client.HTTPException):
                return False
            finally:
                conn.close()

        def relay_down(self, pieces):
            for piece in pieces:
                allowed, reset = faults.relay("down", len(piece))
                self.wfile.write(piece[:allowed])
                if reset:
                    print("fault_proxy: reset a connection mid-response", file=sys.stderr,
                          flush=True)
                    self.reset("resets_down")
                if faults.stall_after(len(piece)):
                    faults.count("stalls")
                    time.sleep(faults.get("stall_seconds"))

        def tamper_listing(self, data, query):
            text = data.decode("utf-8")
            mode = faults.get("list_token")
            if mode == "drop" and "<IsTruncated>true</IsTruncated>" not in text:
                return data
            pattern = re.compile(r"<NextContinuationToken>.*?</NextContinuationToken>", re.S)
            if mode == "drop":
                text, n = pattern.subn("", text)
            elif mode == "repeat":
                # Answers a page asked for with a token by "more after this
                # one, from the same token": a server that loops.
                sent = urllib.parse.parse_qs(query).get("continuation-token")
                if not sent:
                    return data
                token = (sent[-1].replace("&", "&amp;").replace("<", "&lt;")
                         .replace(">", "&gt;"))
                text = pattern.sub("", text)
                text = text.replace("<IsTruncated>false</IsTruncated>",
                                    "<IsTruncated>true</IsTruncated>")
                text, n = re.subn(
                    r"</ListBucketResult>",
                    lambda _: f"<NextContinuationToken>{token}</NextContinuationToken>"
                              "</ListBucketResult>", text, count=1)
            else:
                return data
            if n:
                faults.count("list_tampered")
            return text.encode("utf-8")

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # --tls-cert/--tls-key: the ssl.SSLContext connections are wrapped in,
    # each on its own thread, so a handshake a client refuses blocks no one.
    tls = None

    def finish_request(self, request, client_address):
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except OSError:
            # ssl.SSLError included: the client refused the certificate
            # (an untrusted CA) or went away mid-handshake.
            return
        try:
            super().finish_request(request, client_address)
        finally:
            try:
                request.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Clients that went away mid-answer are part of the game.
        if not isinstance(sys.exc_info()[1], (ConnectionError, OSError, ValueError)):
            super().handle_error(request, client_address)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--fail-complete", type=int, default=0)
    parser.add_argument("--drop-complete-answers", type=int, default=0)
    parser.add_argument("--reset-up-every", type=parse_bytes, default=0)
    parser.add_argument("--reset-down-every", type=parse_bytes, default=0)
    parser.add_argument("--corrupt-up-every", type=parse_bytes, default=0)
    parser.add_argument("--slowdown-fraction", type=float, default=0.0)
    parser.add_argument("--stall-fraction", type=float, default=0.0)
    parser.add_argument("--stall-seconds", type=float, default=0.0)
    parser.add_argument("--stall-down-every", type=parse_bytes, default=0)
    parser.add_argument("--list-token", choices=["drop", "repeat"], default=None)
    parser.add_argument("--drop-abort-answers", type=int, default=0)
    parser.add_argument("--ignore-range", action="store_const", const=1, default=0)
    parser.add_argument("--delay-copies-seconds", type=float, default=0.0)
    parser.add_argument("--delay-heads-seconds", type=float, default=0.0)
    parser.add_argument("--throttle-bytes-per-second", type=parse_bytes, default=0)
    parser.add_argument("--refuse-gcs-unsupported", action="store_const", const=1, default=0)
    parser.add_argument("--slowdown-style", choices=["s3", "azure"], default="s3")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tls-cert", default=None)
    parser.add_argument("--tls-key", default=None)
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    host, port = args.listen.rsplit(":", 1)
    upstream = urllib.parse.urlsplit(args.upstream)
    settings = {name: getattr(args, name) for name in SETTINGS}
    faults = Faults(settings, args.seed)
    server = Server((host, int(port)), make_handler(upstream, faults))
    if args.tls_cert:
        server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.tls.load_cert_chain(args.tls_cert, args.tls_key)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
