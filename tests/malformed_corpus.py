"""A corpus of malformed requests across every route of the blueprint.

Each :class:`Case` is sent through Flask's test client and, as raw bytes,
to a live gunicorn (tests/test_malformed.py). Placeholders in paths and
header values: ``{sid}`` an open native session that holds data, ``{tus}``
a tus upload that holds data, ``{unknown}`` a well-formed id nobody has.
Unless a case says otherwise it must get a 4xx JSON error; the data held by
``{sid}`` and ``{tus}`` must be intact after the whole corpus.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json

UNKNOWN = "AAAAAAAAAAAAAAAAAAAAAA"
#: The corpus app's limits (small, so that oversize bodies are cheap).
MAX_SEGMENT = 64 * 1024
MAX_UPLOAD = 1 << 20


@dataclasses.dataclass
class Case:
    name: str
    method: str
    path: str
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    body: bytes = b""
    #: allowed statuses; empty: any 4xx
    expect: tuple[int, ...] = ()
    #: send the body chunked (no Content-Length)
    chunked: bool = False
    #: only expressible as raw bytes (live run only); gunicorn may answer
    #: it itself (its own 400 page, not our JSON)
    raw: bytes | None = None

    def fill(self, sid: str, tus: str) -> Case:
        def sub(text: str) -> str:
            return text.replace("{sid}", sid).replace("{tus}", tus).replace("{unknown}", UNKNOWN)

        raw = self.raw
        if raw is not None:
            raw = raw.replace(b"{sid}", sid.encode()).replace(b"{tus}", tus.encode())
        return dataclasses.replace(
            self, path=sub(self.path), headers=[(k, sub(v)) for k, v in self.headers], raw=raw
        )


def _seg(segment: str, *, sid: str = "{sid}", done: str | None = None, body: bytes = b"x",
         svelte: bool = False) -> list[tuple[str, str]]:  # fmt: skip
    p = "X-Svelte-Stream-" if svelte else "X-Stream-"
    h = [(p + "Id", sid), (p + "Segment", segment), ("Content-Type", "application/octet-stream")]
    if done is not None:
        h.append((p + "Done", done))
    return h


def _b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


BAD_NUMBERS = [
    "-1", "-0", "1.5", "abc", " ", "0x1", "1e3", "99999999999", "10000", "4294967296",
    "+1", "1 2", "0,1", "NaN", "Infinity", "1_0", "٣", "½", "0b1", "1-", "--1",
    "18446744073709551616",
]  # fmt: skip
BAD_DONE = ["maybe", "TRUE1", "2", "yes please", "tru", "on", "null", "truefalse"]
BAD_IDS = [
    "../../etc/passwd", "a/b", "..", "x" * 65, "a b", "%2e%2e", "ñandú", "a.b", "a\tb",
    "id;rm -rf", "'; DROP TABLE", "{unknown}", "\x01\x02", "café",
]  # fmt: skip
BAD_PATH_IDS = [
    "..%2F..%2Fetc", "x" * 300, "%00", "%ff%fe", "unknownid123", "a.b", "%0d%0aSet-Cookie:x",
    "{unknown}", "%C0%AE%C0%AE",
]  # fmt: skip
WRONG_DIGEST = hashlib.sha256(b"not the body").digest()
BAD_CHECKSUMS = [
    "sha256=AAAA", "md5=zz", "crc32=abc", "sha256=" + _b64(WRONG_DIGEST), "sha256",
    "=abc", "sha1=" + hashlib.sha1(b"other").hexdigest(), "SHA256=!!!!",
    "sha512=" + _b64(b"x" * 64),
    "md5=" + _b64(hashlib.md5(b"other").digest()), "sha256=" + WRONG_DIGEST.hex(),
]  # fmt: skip
BAD_CREATE = [
    b"{", b"[]", b"null", b'"text"', b'{"size": -1}', b'{"size": "10"}', b'{"size": 1e30}',
    b'{"size": true}', b'{"size": 99999999999}', b'{"metadata": []}', b'{"metadata": "x"}',
    b'{"filename": 5}', b'{"filename": "' + b"a" * 2000 + b'"}', b'{"content_type": ["x"]}',
    b'{"metadata": {"k": "' + b"x" * 20000 + b'"}}', b"\xff\xfe{}", b'{"filename": "\xff"}',
    b"{" * 5000, b"[" * 100000,
]  # fmt: skip
BAD_CHANNELS = [
    "a%20b", "a%0Ab", "x" * 200, "%C3%BC", "private-x", "a%00b", "a%0D%0Aevent:%20x", "<b>",
]  # fmt: skip


def build() -> list[Case]:
    cases: list[Case] = []
    add = cases.append
    U = "/streaming/uploads"
    for v in BAD_NUMBERS:
        for svelte in (False, True):
            add(Case(f"segment {v!r} svelte={svelte}", "POST", U, _seg(v, svelte=svelte), b"x"))
        add(Case(f"segment {v!r} in path", "POST", U + "/{sid}", _seg(v)[1:], b"x"))
    for v in BAD_DONE:
        for svelte in (False, True):
            add(Case(f"done {v!r}", "POST", U, _seg("900", done=v, svelte=svelte), b"x"))
    for v in BAD_IDS:
        for svelte in (False, True):
            add(Case(f"id {v!r}", "POST", U, _seg("0", sid=v, svelte=svelte), b"x"))
    add(Case("empty id", "POST", U, _seg("0", sid=""), b"x"))
    add(Case("missing segment", "POST", U, [("X-Stream-Id", "{sid}")], b"x"))
    add(Case("missing id", "POST", U, [("X-Stream-Segment", "0")], b"x"))
    add(Case("done only", "POST", U, [("X-Stream-Done", "true")], b""))
    for v in BAD_PATH_IDS:
        for m in ("GET", "DELETE", "POST"):
            add(Case(f"{m} path id {v!r}", m, f"{U}/{v}", _seg("0")[1:] if m == "POST" else []))
    for v in BAD_CHECKSUMS:
        add(Case(f"checksum {v!r}", "POST", U, [*_seg("7"), ("X-Stream-Checksum", v)], b"y" * 10))
    for body in BAD_CREATE:
        add(Case(f"create body {body[:30]!r}", "POST", U, [("Content-Type", "application/json")],
                 body))  # fmt: skip
    add(Case("create body over 64 KiB", "POST", U, [("Content-Type", "application/json")],
             b'{"x": "' + b"x" * 70000 + b'"}'))  # fmt: skip
    # Names are never paths: odd ones are accepted as plain data (201).
    for name in ("../../etc/passwd", "a\x00b", "..\\..\\boot.ini", "/abs/path", "x/" * 200):
        add(Case(f"filename {name[:20]!r}", "POST", U, [("Content-Type", "application/json")],
                 json.dumps({"filename": name}).encode(), expect=(201,)))  # fmt: skip
    # Sizes and conflicts.
    big = b"z" * (MAX_SEGMENT + 1)
    add(Case("segment over the limit", "POST", U, _seg("8"), big, expect=(413,)))
    add(Case("segment over the limit, chunked", "POST", U, _seg("8"), big, expect=(413,),
             chunked=True))  # fmt: skip
    add(Case("chunked segment conflicting with 0", "POST", U, _seg("0"), b"different",
             expect=(409,), chunked=True))  # fmt: skip
    add(Case("segment 0 with other bytes", "POST", U, _seg("0"), b"different", expect=(409,)))
    add(Case("segment 1 shorter", "POST", U, _seg("1"), b"s", expect=(409,)))
    add(Case("done with a gap", "POST", U, _seg("5", done="true"), b"", expect=(409,)))
    add(Case("done beyond segments", "POST", U, _seg("1", done="true"), b"", expect=(409,)))
    # Methods.
    for m, p in (("PUT", U), ("PATCH", U + "/{sid}"), ("PUT", "/streaming/events/x"),
                 ("DELETE", "/streaming/"), ("PUT", "/streaming/tus/{tus}"),
                 ("GET", "/streaming/tus/"), ("POST", "/streaming/client.js"),
                 ("GET", "/streaming/nowhere")):  # fmt: skip
        add(Case(f"{m} {p}", m, p))
    # Channels.
    add(Case("events without channel", "GET", "/streaming/events"))
    add(Case("events empty channel", "GET", "/streaming/events?channel="))
    add(Case("events 17 channels", "GET",
             "/streaming/events?" + "&".join(f"channel=c{i}" for i in range(17))))  # fmt: skip
    for name in BAD_CHANNELS:
        add(Case(f"channel {name[:20]!r}", "GET", f"/streaming/events/{name}"))
        add(Case(f"channel query {name[:20]!r}", "GET", f"/streaming/events?channel={name}"))
    # tus.
    T, TV = "/streaming/tus/", [("Tus-Resumable", "1.0.0")]
    add(Case("tus create without Tus-Resumable", "POST", T, [("Upload-Length", "10")]))
    for v in ("0.2.2", "1.0", "", "1.0.0, 0.2.2"):
        add(Case(f"tus version {v!r}", "POST", T, [("Tus-Resumable", v), ("Upload-Length", "1")]))
    for v in [n for n in BAD_NUMBERS[:12] if n != "10000"]:
        add(Case(f"tus Upload-Length {v!r}", "POST", T, [*TV, ("Upload-Length", v)]))
    add(Case("tus length over the limit", "POST", T, [*TV, ("Upload-Length", str(MAX_UPLOAD + 1))]))
    add(Case("tus length and defer", "POST", T,
             [*TV, ("Upload-Length", "5"), ("Upload-Defer-Length", "1")]))  # fmt: skip
    add(Case("tus no length", "POST", T, TV))
    for v in ("2", "0", "yes", "-1"):
        add(Case(f"tus defer {v!r}", "POST", T, [*TV, ("Upload-Defer-Length", v)]))
    for v in ("filename !!!", "a b c", "k " + _b64(b"x") + ",k " + _b64(b"y"),
              " , ", "f\u00e9 " + _b64(b"x"), "k " + "=" * 5,
              "k " + "A" * 9000):  # fmt: skip
        add(Case(f"tus metadata {v[:20]!r}", "POST", T,
                 [*TV, ("Upload-Length", "5"), ("Upload-Metadata", v)]))  # fmt: skip
    # Not UTF-8 once decoded: kept as data (replacement characters), 201.
    meta = ("Upload-Metadata", "k " + _b64(b"\xff\xfe"))
    add(
        Case(
            "tus metadata not utf-8", "POST", T, [*TV, ("Upload-Length", "5"), meta], expect=(201,)
        )
    )
    for v in ("bogus", "final;", "final;/nowhere/x", "final;{unknown}", "partial;x"):
        add(Case(f"tus concat {v!r}", "POST", T,
                 [*TV, ("Upload-Concat", v), ("Upload-Length", "5")]))  # fmt: skip
    oct_ = [("Content-Type", "application/offset+octet-stream")]
    P = "/streaming/tus/{tus}"
    add(Case("tus patch wrong type", "PATCH", P, [*TV, ("Upload-Offset", "4")], b"x",
             expect=(415,)))  # fmt: skip
    add(Case("tus patch json type", "PATCH", P,
             [*TV, ("Upload-Offset", "4"), ("Content-Type", "application/json")], b"{}",
             expect=(415,)))  # fmt: skip
    add(Case("tus patch no offset", "PATCH", P, TV + oct_, b"x"))
    for v in [*BAD_NUMBERS[:12], "0", "3", "5", "99999"]:
        add(Case(f"tus offset {v!r}", "PATCH", P, TV + oct_ + [("Upload-Offset", v)], b"x"))
    add(Case("tus patch past length", "PATCH", P, TV + oct_ + [("Upload-Offset", "4")],
             b"x" * 100, expect=(413,)))  # fmt: skip
    for v in ("crc32 AAAA", "sha256 !!!", "sha256", "sha1 " + _b64(b"x" * 20)):
        add(Case(f"tus checksum {v!r}", "PATCH", P,
                 TV + oct_ + [("Upload-Offset", "4"), ("Upload-Checksum", v)], b"q"))  # fmt: skip
    for m in ("HEAD", "PATCH", "DELETE"):
        add(Case(f"tus {m} unknown", m, "/streaming/tus/{unknown}",
                 TV + oct_ + [("Upload-Offset", "0")]))  # fmt: skip
        add(Case(f"tus {m} bad id", m, "/streaming/tus/..%2Fx",
                 TV + oct_ + [("Upload-Offset", "0")]))  # fmt: skip
    add(Case("tus override bogus", "POST", P, [*TV, ("X-HTTP-Method-Override", "TRACE")]))
    add(Case("tus post without override", "POST", P, TV))
    # Raw bytes only (the live run): broken framing and header bytes.
    for name, raw in RAW.items():
        add(Case(f"raw {name}", "RAW", "", raw=raw))
    for i, case in enumerate(cases):
        case.name = f"{i:03d} {case.name}"
    return cases


def _raw(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


RAW: dict[str, bytes] = {
    "non-utf8 id": b"POST /streaming/uploads HTTP/1.1\r\nHost: x\r\nX-Stream-Id: \xff\xfe\xfd\r\n"
    b"X-Stream-Segment: 0\r\nContent-Length: 1\r\n\r\nx",
    "non-utf8 segment": b"POST /streaming/uploads HTTP/1.1\r\nHost: x\r\nX-Stream-Id: {sid}\r\n"
    b"X-Stream-Segment: \xc3\x28\r\nContent-Length: 1\r\n\r\nx",
    "non-utf8 path": b"GET /streaming/uploads/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
    "duplicate segment": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\nX-Stream-Id: {sid}\n"
                              "X-Stream-Segment: 1\nX-Stream-Segment: 2\n"
                              "Content-Length: 1\n", b"x"),
    "duplicate id": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\nX-Stream-Id: {sid}\n"
                         f"X-Stream-Id: {UNKNOWN}\nX-Stream-Segment: 1\nContent-Length: 1\n", b"x"),
    "duplicate content-length": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\n"
                                     "X-Stream-Id: {sid}\nX-Stream-Segment: 1\n"
                                     "Content-Length: 1\nContent-Length: 2\n", b"xy"),
    "content-length abc": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\nX-Stream-Id: {sid}\n"
                               "X-Stream-Segment: 1\nContent-Length: abc\n", b"x"),
    "content-length negative": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\n"
                                    "X-Stream-Id: {sid}\nX-Stream-Segment: 1\n"
                                    "Content-Length: -1\n", b"x"),
    "bad chunk size": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\nX-Stream-Id: {sid}\n"
                           "X-Stream-Segment: 1\nTransfer-Encoding: chunked\n",
                           b"zz\r\nxx\r\n0\r\n\r\n"),
    "chunked and length": _raw("POST /streaming/uploads HTTP/1.1\nHost: x\nX-Stream-Id: {sid}\n"
                               "X-Stream-Segment: 1\nTransfer-Encoding: chunked\n"
                               "Content-Length: 3\n", b"1\r\nx\r\n0\r\n\r\n"),
    "header without colon": _raw("GET /streaming/uploads/{sid} HTTP/1.1\nHost: x\nBroken\n"),
    "space in header name": _raw("GET /streaming/uploads/{sid} HTTP/1.1\nHost: x\nX Stream: 1\n"),
    "nul in header": b"GET /streaming/uploads/{sid} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad percent": _raw("GET /streaming/uploads/%zz HTTP/1.1\nHost: x\n"),
    "huge header": _raw("GET /streaming/uploads/{sid} HTTP/1.1\nHost: x\nX-Big: "
                        + "a" * 9000 + "\n"),
    "bad tus offset bytes": b"PATCH /streaming/tus/{tus} HTTP/1.1\r\nHost: x\r\n"
    b"Tus-Resumable: 1.0.0\r\nUpload-Offset: \xb9\r\n"
    b"Content-Type: application/offset+octet-stream\r\nContent-Length: 1\r\n\r\nx",
    "tus metadata bytes": b"POST /streaming/tus/ HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
    b"Upload-Length: 5\r\nUpload-Metadata: filename \xff\xfe\r\n\r\n",
}  # fmt: skip

CASES = build()
