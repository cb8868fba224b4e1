#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real S3 server, for tests.

Forwards every request to the upstream server unchanged (method, path,
query, headers including Host, so SigV4 signatures stay valid, and body),
except the first N CompleteMultipartUpload requests (POST with an uploadId
in the query), which it answers itself the way S3 sometimes does: HTTP 200
with an InternalError document in the body. The multipart upload stays
open upstream, so a client that retries completes it.

CLI:
  fault_proxy.py --listen 127.0.0.1:0 --upstream http://127.0.0.1:7480
                 [--fail-complete N]
Prints `ready PORT` when listening. GET /__proxy/stats answers JSON:
{"complete_seen": n, "complete_failed": n}.
"""

import argparse
import http.client
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INTERNAL_ERROR = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                  b"<Error><Code>InternalError</Code>"
                  b"<Message>We encountered an internal error. Please try again.</Message>"
                  b"<RequestId>fault-proxy</RequestId></Error>")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
              "expect"}


class Stats:
    def __init__(self, fail_complete):
        self.lock = threading.Lock()
        self.fail_left = fail_complete
        self.seen = 0
        self.failed = 0

    def complete_should_fail(self):
        with self.lock:
            self.seen += 1
            if self.fail_left > 0:
                self.fail_left -= 1
                self.failed += 1
                return True
            return False


def make_handler(upstream, stats):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, body, content_type="application/xml"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def forward(self):
            if self.path == "/__proxy/stats":
                body = json.dumps({"complete_seen": stats.seen,
                                   "complete_failed": stats.failed}).encode()
                return self.reply(200, body, "application/json")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            query = urllib.parse.urlsplit(self.path).query
            if self.command == "POST" and "uploadId=" in query and stats.complete_should_fail():
                print("fault_proxy: CompleteMultipartUpload answered 200 + InternalError",
                      file=sys.stderr, flush=True)
                return self.reply(200, INTERNAL_ERROR)
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            # HEAD answers keep the upstream's Content-Length (the object's
            # size); others get the length of the body relayed.
            keep_length = self.command == "HEAD"
            for name, value in response.getheaders():
                if name.lower() in HOP_BY_HOP or (name.lower() == "content-length" and not keep_length):
                    continue
                self.send_header(name, value)
            if not keep_length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

    return Handler


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--fail-complete", type=int, default=1)
    args = parser.parse_args(argv)
    host, port = args.listen.rsplit(":", 1)
    upstream = urllib.parse.urlsplit(args.upstream)
    server = ThreadingHTTPServer((host, int(port)),
                                 make_handler(upstream, Stats(args.fail_complete)))
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
