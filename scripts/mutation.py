"""Mutation testing, one module slice at a time, time-boxed (``tox -e mutation``).

::

    python scripts/mutation.py --list                  # the slices, their files and tests
    python scripts/mutation.py sse --minutes 20        # run (or resume) one slice for <= 20 min
    python scripts/mutation.py sse --report            # the score and the survivors so far
    python scripts/mutation.py sse --fresh             # forget the slice's session, start over

Tool: cosmic-ray (maintained; see setup.cfg's ``mutation`` extra for why not
mutmut 3). Each slice has its own session database under
``.mutation/<slice>/`` (gitignored), so a run killed by its time box (or by
the end of a session) resumes where it stopped: the mutant that was being
tested when the box closed is simply tested again next time.

Every ``exec`` runs in a fresh copy of the repository (``.mutation/<slice>/src``),
never in the working tree: cosmic-ray writes each mutant to disk, and the live
tests' gunicorn workers import the mutated package from that copy (their
``PYTHONPATH`` is the copy's root), so mutants reached only through a real
server are tested too. When the slice's modules change, the session starts
over (its mutants no longer match the code).

The score printed is ``killed / (killed + survived)`` over the mutants tested
so far (``incompetent`` mutants, which do not even import, are not counted),
and how many are still pending. Survivors are written to
``.mutation/<slice>/survivors.txt`` with their diffs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import operator
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
#: What a copy of the repository for a mutation run holds.
COPY = ("flask_streaming", "tests", "docs", "examples", "benchmarks", "setup.cfg", "tox.ini",
        "pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE", "MANIFEST.in")  # fmt: skip
#: Folders never copied (large, or outputs).
IGNORE = shutil.ignore_patterns("node_modules", "__pycache__", "_build", ".mutation", "*.pyc")


@dataclasses.dataclass(frozen=True)
class Slice:
    """A group of modules mutated together and the tests that guard them."""

    name: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    #: Seconds one mutant's test run may take before it counts as killed
    #: (a hang is a failure the tests caught).
    timeout: float = 120.0
    note: str = ""


SLICES = {
    s.name: s
    for s in (
        Slice(
            "sse",
            ("flask_streaming/sse.py",),
            # Fast, pointed tests first: a killed mutant stops at its first failure.
            ("tests/test_sse_survivors.py", "tests/test_responses.py",
             "tests/test_sse_wire.py", "tests/test_sse_wire_live.py"),
            note="the Flask side of SSE: sse_response, produce, EventWriter, last_event_id",
        ),
        Slice(
            "sse-wire",
            ("flask_streaming/sse_wire.py",),
            ("tests/test_sse_encoder.py", "tests/test_sse_parser_model.py",
             "tests/test_sse_survivors.py", "tests/test_sse_wire.py",
             "tests/test_sse_conformance.py"),
            note="the event-stream wire format: encoder, parser, retry lines"
            " (the JS client's parser: not covered)",
        ),
        Slice(
            "transport",
            ("flask_streaming/transport.py",),
            ("tests/test_transport_survivors.py", "tests/test_transport_unit.py",
             "tests/test_parked.py", "tests/test_write_through.py",
             "tests/test_responses.py", "tests/test_sse_wire.py", "tests/test_live_streams.py",
             "tests/test_channels_live.py::test_graceful_shutdown_sends_a_jittered_retry_and_closes"),
            timeout=240.0,
            note="outbox, heartbeats, flushing, disconnects, writes straight to the socket,"
            " parked streams (live gunicorn tests included)",
        ),
        Slice(
            "brokers",
            ("flask_streaming/brokers",),
            ("tests/test_brokers_survivors.py", "tests/test_channels.py", "tests/test_resume.py",
             "tests/test_malformed.py::test_parse_last_event_id_round_trips",
             "tests/test_channels_live.py",
             # waits out the listener's 10 s SUBSCRIBE deadline: last
             "tests/test_brokers_survivors_slow.py"),
            timeout=300.0,
            note="memory and Redis brokers (real redis-server and gunicorn tests included)",
        ),
        Slice(
            "uploads",
            tuple(f"flask_streaming/uploads/{m}.py" for m in (
                "transaction", "core", "native", "delivery", "sessions", "segments",
                "bodies", "locks", "storage", "service", "results", "json_body",
                "private_files")),
            ("tests/test_uploads_survivors.py", "tests/test_uploads.py",
             "tests/test_uploads_committed.py",
             "tests/test_uploads_expiry.py", "tests/test_uploads_flow.py",
             "tests/test_uploads_model.py", "tests/test_uploads_socket_body.py",
             "tests/test_uploads_live.py", "tests/test_uploads_lock_live.py"),
            timeout=300.0,
            note="the upload service and its transaction, the native protocol's flow,"
            " sessions, bodies, locks, file storage, post-commit delivery",
        ),
        Slice(
            "tus",
            ("flask_streaming/uploads/tus.py", "flask_streaming/uploads/tus_headers.py",
             "flask_streaming/uploads/tus_concat.py", "flask_streaming/uploads/ranges.py"),
            ("tests/test_tus_survivors.py", "tests/test_tus.py", "tests/test_tus_download.py",
             "tests/test_security_concat_model.py", "tests/test_tus_live.py"),
            timeout=300.0,
            note="tus 1.0 views, header parsing, concatenation, offset ranges (PATCH)",
        ),
    )
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Equivalent:
    """A mutant that cannot change behaviour, found by a run and checked by
    hand: skipped from then on, and listed in docs/testing.rst."""

    module: str
    operator: str
    #: text of the mutated source line (a substring: robust to line shifts)
    line: str
    reason: str
    #: when the line holds several such mutants: the source text that starts
    #: where this one does (e.g. ``"== 1"``)
    at: str = ""
    #: ``core/NumberReplacer`` only: ``+1`` or ``-1`` when just one of the
    #: number's two mutants is equivalent (0: both)
    offset: int = 0
    #: when the same line's text is found elsewhere in the module: text of the
    #: line after it
    then: str = ""


EQUIVALENTS = (
    Equivalent(
        "flask_streaming/sse.py",
        "core/ReplaceComparisonOperator_Is_Eq",
        "if type(item) is str and",
        "type(item) == str and type(item) is str agree for every item",
    ),
    Equivalent(
        "flask_streaming/sse_wire.py",
        "core/NumberReplacer",
        "return join(encoder(obj, 0))",
        "the C encoder was made with indent=None, so the indent level is never used",
    ),
    Equivalent(
        "flask_streaming/sse_wire.py",
        "core/ReplaceComparisonOperator_Eq_GtE",
        'if m.group() == b"\\r" and m.end() == len(buf):',
        "a match never ends past the buffer: m.end() >= len(buf) only when equal",
        at="== len(buf)",
    ),
    *(
        Equivalent(
            "flask_streaming/sse_wire.py",
            f"core/ReplaceComparisonOperator_Lt_{op}",
            "if len(head) < len(BOM) and BOM.startswith(head):",
            "a head as long as the BOM that BOM.startswith accepts is the BOM itself: held"
            " one chunk longer, it is stripped from the same bytes; a longer head is no"
            " prefix of the BOM, so '<', '<=' and 'is not' agree",
        )
        for op in ("LtE", "IsNot")
    ),
    Equivalent(
        "flask_streaming/sse_wire.py",
        "core/ReplaceComparisonOperator_Eq_LtE",
        'if line == "":',
        "no string is less than the empty string: line <= '' only when line == ''",
    ),
    Equivalent(
        "flask_streaming/sse.py",
        "core/ReplaceBinaryOperator_Mul_Div",
        "*,",
        "the keyword-only marker '*' made '/': every caller passes those parameters by keyword",
    ),
    Equivalent(
        "flask_streaming/uploads/tus_headers.py",
        "core/ReplaceComparisonOperator_Eq_LtE",
        'or "/" in path[len(base) :] or len(path) == len(base):',
        "len(path) < len(base) never gets there: such a path does not start with base"
        " (the first test of the line)",
    ),
    *(
        Equivalent(
            "flask_streaming/uploads/tus_concat.py",
            f"core/ReplaceComparisonOperator_Eq_{op}",
            "if tx.session.used_by == final_id:",
            "_unclaim_part runs only on parts this final upload claimed, and a claimed"
            " part's used_by never changes: it is final_id, so == and <=, >= agree",
        )
        for op in ("LtE", "GtE")
    ),
    *(
        Equivalent(
            "flask_streaming/uploads/tus_headers.py",
            f"core/ReplaceComparisonOperator_Eq_{op}",
            'if len(parts) == 1 or parts[1] == "":',
            "the pair was strip()ped, so a pair of two parts has a non-empty value:"
            ' parts[1] == "" is always False there, and so is the mutant (is, <, <=)',
            at='== ""',
        )
        for op in ("Is", "Lt", "LtE")
    ),
    Equivalent(
        "flask_streaming/uploads/tus_concat.py",
        "core/ReplaceBinaryOperator_Mul_Div",
        "*,",
        "create_final's keyword-only marker '*' made '/': its one caller (tus.py)"
        " passes header= and the rest by keyword",
    ),
    Equivalent(
        "flask_streaming/uploads/ranges.py",
        "core/ReplaceBinaryOperator_Mul_Div",
        "*,",
        "append_range's keyword-only marker '*' made '/': its callers (tus.py,"
        " UploadService.append_range) pass everything after body by keyword",
    ),
    Equivalent(
        "flask_streaming/uploads/tus.py",
        "core/ReplaceComparisonOperator_Eq_Is",
        "if exc.status == status_of(exc.code):",
        "the one code with a tus status of its own (checksum_mismatch: 460) is raised"
        " without a status, so exc.status is the very int object of its ERRORS entry,"
        " the one status_of returns",
    ),
    Equivalent(
        "flask_streaming/uploads/ranges.py",
        "core/ReplaceComparisonOperator_NotEq_Is",
        "if session.state != OPEN or session.length is None",
        "finish_if_complete's callers reach it only with an open session loaded from its"
        " JSON record in the same transaction: its state is a new str, never the OPEN"
        " object, so 'is OPEN' is False exactly where '!= OPEN' is",
        at="!= OPEN",
    ),
    Equivalent(
        "flask_streaming/uploads/tus_concat.py",
        "core/ReplaceComparisonOperator_Gt_Is",
        "if length is not None and limit is not None and length > limit:",
        "create_final's early limit check: service.create refuses the same length a few"
        " lines on with the same 413 payload_too_large and limit (the parts claimed and"
        " released meanwhile); only the message's wording differs",
    ),
    *(
        Equivalent(
            "flask_streaming/uploads/bodies.py",
            f"core/ReplaceBinaryOperator_Add_{op}",
            "if staging.size + filled > limit:",
            "the socket path reads exactly Content-Length bytes, and every caller refuses"
            " a Content-Length past the limit before reading (native: max_segment_size;"
            " tus: the room left, and max_segment_size when checksummed), so this check"
            " never fires; a smaller left side (a|b, a^b, a&b, a-b, a/b, a//b, a%b, a>>b"
            " <= a+b) never fires either",
            at="+ filled",
        )
        for op in ("BitOr", "BitXor", "BitAnd", "Sub", "Div", "FloorDiv", "Mod", "RShift")
    ),
    Equivalent(
        "flask_streaming/uploads/bodies.py",
        "core/ReplaceComparisonOperator_Lt_NotEq",
        "while filled < len(buffer) and body.remaining:",
        "readinto(buffer[filled:]) fills at most the space left, so filled never passes"
        " len(buffer): < and != agree",
    ),
    Equivalent(
        "flask_streaming/uploads/storage.py",
        "core/ReplaceBinaryOperator_Sub_Add",
        "n = os.copy_file_range(src, dst, size - done, done, offset + done)",
        "src is the segment's own body file, exactly size bytes (placed from the staging"
        " whose size the record holds): asking for size + done instead of size - done"
        " bytes from position done copies the same size - done bytes to its end",
        at="- done",
    ),
    Equivalent(
        "flask_streaming/uploads/bodies.py",
        "core/ReplaceComparisonOperator_IsNot_Gt",
        "or body.failed is not False",
        "gunicorn's Body.failed is a bool (False, set to True): 'is not False' and '> False' agree",
    ),
    Equivalent(
        "flask_streaming/uploads/bodies.py",
        "core/ReplaceComparisonOperator_LtE_Lt",
        "if want <= 0:",
        "SocketBody.readinto's one caller (_receive) never asks once the body or the"
        " buffer is exhausted, so want is never 0",
    ),
    Equivalent(
        "flask_streaming/uploads/locks.py",
        "core/ReplaceBinaryOperator_Mul_Div",
        "delay = min(delay * 2, 0.02)",
        "the back-off between tries of a busy lock (doubling made halving): it still"
        " tries until the deadline; only how often it polls differs",
    ),
    Equivalent(
        "flask_streaming/transport.py",
        "core/NumberReplacer",
        "_hook_pid = 0",
        "_hook_pid's starting value, and its reset when signal.signal refused (not the"
        " main thread): 0, 1 and -1 all mean 'not installed here' to the pid check in any"
        " process but PID 1 (a gunicorn worker never is: the master is its parent)",
        at="0",
    ),
    Equivalent(
        "flask_streaming/transport.py",
        "core/ExceptionReplacer",
        "except OSError:",
        "the guard around the client socket's fileno() (the disconnect watcher's and"
        " _arm_send_timeout's): a socket, stdlib or gevent (26.x: _closedsocket), returns"
        " -1 once closed and never raises there, so the handler never runs",
        then="return",
    ),
    Equivalent(
        "flask_streaming/transport.py",
        "core/AddNot",
        'if "gevent.monkey" in sys.modules:',
        "which poll answers _writable's zero-timeout check: gevent's (under gevent) or"
        " the original (without gevent, get_original gives select.poll itself); both tell"
        " whether the socket has room, gevent's with a switch to the hub (a cost, not a"
        " different answer)",
    ),
    Equivalent(
        "flask_streaming/transport.py",
        "core/NumberReplacer",
        "peek = self._raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)",
        "the disconnect watcher peeks 2 bytes instead of 1 (the +1 mutant): a peek"
        " consumes nothing, and only whether it is empty counts",
        offset=1,
    ),
    Equivalent(
        "flask_streaming/brokers/redis.py",
        "core/NumberReplacer",
        "self.last_seen = 0",
        "RedisBroker's starting last_seen is never read: on_first_subscriber sets it"
        " from Redis (position()) before the listener starts and before any subscriber"
        " is positioned (current_seq); a subscriber of no channel (refused by the"
        " route) never calls it and is in no channel's set, so its position is never sent",
    ),
    Equivalent(
        "flask_streaming/brokers/redis.py",
        "core/ReplaceComparisonOperator_NotEq_Gt",
        'if msg is None or msg["type"] != "message":',
        "every other pub/sub message type (subscribe, unsubscribe, psubscribe,"
        " punsubscribe, ssubscribe, sunsubscribe, pmessage, smessage, pong) sorts after"
        " 'message', so '> \"message\"' skips exactly what '!=' skips",
    ),
    *(
        Equivalent(
            "flask_streaming/brokers/redis.py",
            op,
            "if self._handoff is not None:",
            "the Event a second subscriber waits on while the listener starts: gevent's made"
            " under threads, threading's under gevent (monkey-patched, so gevent's again);"
            " gevent's Event is set from another thread and wakes a waiting thread (checked:"
            " the second subscriber of two racing threads goes on when the first is done)",
            then="from gevent.event import Event",
        )
        for op in ("core/ReplaceComparisonOperator_IsNot_Is", "core/AddNot")
    ),
    Equivalent(
        "flask_streaming/brokers/redis.py",
        "core/NumberReplacer",
        "run_id = line[7:].strip()",
        "the run id is cut from INFO's 'run_id:' line one character earlier or later: it"
        " is only compared with the one this code recorded, and any fixed cut still"
        " tells one server run from the next",
    ),
    Equivalent(
        "flask_streaming/brokers/memory.py",
        "core/NumberReplacer",
        "trimmed = self.trimmed.get(ch, 0)",
        "a channel never trimmed counts as trimmed up to -1 instead of 0 (the -1 mutant):"
        " it is compared with 'trimmed > after', and after is never negative (0 for a"
        " foreign id, else the client's seq)",
        offset=-1,
    ),
    *(
        Equivalent(
            "flask_streaming/brokers/redis.py",
            f"core/ReplaceComparisonOperator_NotEq_{op}",
            'msg["type"] != "subscribe" or _text(msg["channel"]) != events',
            "before the events channel's own SUBSCRIBE confirmation only the control"
            " channel's confirmation and messages can come (Redis confirms a channel before"
            " it delivers its messages): they fail the channel test whatever the type test"
            " says, and the events channel's confirmation ('subscribe') passes both",
            at='!= "subscribe"',
        )
        for op in ("Gt", "Lt")
    ),
    *(
        Equivalent(
            "flask_streaming/brokers/redis.py",
            f"core/ReplaceComparisonOperator_NotEq_{op}",
            'msg["type"] != "subscribe" or _text(msg["channel"]) != events',
            "the listener's wait for the SUBSCRIBE confirmation stops at the control"
            " channel's confirmation instead of the events channel's (== events, >= events,"
            " > events, is events: '<prefix>:control' sorts before '<prefix>:events', and a"
            " decoded name is never the events object) or, for < events, at the events"
            " channel's as before: both channels are subscribed by one SUBSCRIBE command,"
            " which Redis runs at once before it sends either confirmation, so events"
            " published after either confirmation reach the listener all the same",
            at="!= events",
        )
        for op in ("Eq", "Gt", "GtE", "Lt", "Is")
    ),
    Equivalent(
        "flask_streaming/brokers/redis.py",
        "core/ReplaceBinaryOperator_Add_BitOr",
        "entries, (last, trimmed) = results[2 * i], results[2 * i + 1]",
        "2 * i is even, so 2 * i | 1 is 2 * i + 1 (the same result of the pipeline)",
        at="+ 1]",
    ),
    Equivalent(
        "flask_streaming/brokers/redis.py",
        "core/ReplaceComparisonOperator_Eq_GtE",
        'if _text(msg["channel"]) == events:',
        "the listener is subscribed to two channels only, '<prefix>:control' and"
        " '<prefix>:events', and the control channel sorts before the events channel:"
        " '>= events' is true exactly for the events channel",
    ),
    Equivalent(
        "flask_streaming/brokers/base.py",
        "core/NumberReplacer",
        "self.last_seq = 0",
        "a subscriber's starting last_seq made -1 (the -1 mutant): seqs start at 1, so"
        " no event is dropped by 'seq <= last_seq' either way",
        offset=-1,
    ),
    Equivalent(
        "flask_streaming/brokers/redis.py",
        "core/NumberReplacer",
        "while (msg := pubsub.get_message(timeout=1.0)) is None or (",
        "how long each read for the SUBSCRIBE confirmation blocks (0 s: it polls; the"
        " reply is read by this same loop as soon as it is in): the same messages are"
        " read, under the same 10 s deadline; only CPU differs",
    ),
)


#: An upload session's ``state`` is one of two strings (``uploads/sessions.py``).
SESSION_STATES = {"OPEN": "open", "COMPLETED": "completed"}
_COMPARE: dict[str, Callable[[str, str], bool]] = {
    "Eq": lambda a, b: a == b, "NotEq": lambda a, b: a != b,
    "Lt": lambda a, b: a < b, "LtE": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b, "GtE": lambda a, b: a >= b,
}  # fmt: skip
_STATE_COMPARISON = re.compile(r"\bstate\s*$")


def state_comparison(m: Any, src: Path) -> Equivalent | None:
    """A comparison ``<x>.state OP OPEN|COMPLETED`` whose mutated operator
    gives the same answer for both session states (``== OPEN`` made
    ``>= OPEN``: ``"completed" < "open"``): equivalent."""
    op = str(m.operator_name)
    match = re.fullmatch(r"core/ReplaceComparisonOperator_(\w+?)_(\w+)", op)
    if match is None or match[1] not in _COMPARE or match[2] not in _COMPARE:
        return None
    module = str(m.module_path)
    line = (src / module).read_text("utf-8").splitlines()[m.start_pos[0] - 1]
    before, after = line[: m.start_pos[1]], line[m.end_pos[1] :]
    right = re.match(r"\s*(OPEN|COMPLETED)\b", after)
    if m.start_pos[0] != m.end_pos[0] or not _STATE_COMPARISON.search(before) or not right:
        return None
    const = SESSION_STATES[right[1]]
    old, new = _COMPARE[match[1]], _COMPARE[match[2]]
    if all(old(v, const) == new(v, const) for v in SESSION_STATES.values()):
        return Equivalent(
            module, op, line.strip(),
            f"a session's state is 'open' or 'completed': '{match[1]}' and"
            f" '{match[2]}' {right[1]} agree for both",
        )  # fmt: skip
    return None


_FLAG = r"(?:os\.O_[A-Z]+|fcntl\.LOCK_[A-Z]+|socket\.MSG_[A-Z]+|NOFOLLOW)"
_FLAGS = re.compile(rf"{_FLAG}(?:\s*\|\s*{_FLAG})+")


def _flag_value(name: str) -> int:
    import fcntl

    if name == "NOFOLLOW":  # uploads/private_files.py
        return os.O_NOFOLLOW | os.O_CLOEXEC
    import socket

    module, attr = name.split(".")
    return int(getattr({"os": os, "fcntl": fcntl, "socket": socket}[module], attr))


def flag_union(m: Any, src: Path) -> Equivalent | None:
    """``os.O_A | os.O_B`` (``fcntl.LOCK_*``, ``socket.MSG_*`` too) with ``|`` made ``+`` or
    ``^``: the flags' bits are distinct (checked), so the number is the
    same: equivalent."""
    op = str(m.operator_name)
    if op not in (
        "core/ReplaceBinaryOperator_BitOr_Add",
        "core/ReplaceBinaryOperator_BitOr_BitXor",
    ):
        return None
    module = str(m.module_path)
    line = (src / module).read_text("utf-8").splitlines()[m.start_pos[0] - 1]
    for match in _FLAGS.finditer(line):
        if match.start() < m.start_pos[1] < match.end():
            values = [_flag_value(n) for n in re.findall(_FLAG, match[0])]
            if sum(values) == functools.reduce(operator.or_, values):
                return Equivalent(
                    module, op, line.strip(), "flags of distinct bits: |, + and ^ agree"
                )
    return None


def equivalent(m: Any, src: Path) -> Equivalent | None:
    """The entry of :data:`EQUIVALENTS` that mutation *m* is, if any (or a
    :func:`state_comparison`)."""
    module = str(m.module_path)
    for eq in EQUIVALENTS:
        if eq.module == module and eq.operator == m.operator_name:
            lines = (src / module).read_text("utf-8").splitlines()
            line = lines[m.start_pos[0] - 1]
            if eq.then and eq.then not in "".join(lines[m.start_pos[0] : m.start_pos[0] + 1]):
                continue
            if eq.offset and (1 if m.occurrence % 2 == 0 else -1) != eq.offset:
                continue  # NumberReplacer: even occurrences add 1, odd ones subtract 1
            if eq.line in line and line[m.start_pos[1] :].startswith(eq.at):
                return eq
    return state_comparison(m, src) or flag_union(m, src)


def _sources_hash(s: Slice) -> str:
    """A hash of the slice's modules: the session is valid while it holds."""
    h = hashlib.sha256()
    for module in s.modules:
        path = ROOT / module
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _copy_repo(dest: Path) -> None:
    """A fresh copy of what the tests need (the working tree's current files)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, dest / name)


def _command(s: Slice) -> str:
    """The test command run on each mutant."""
    tests = " ".join(shlex.quote(t) for t in s.tests)
    # -x: the first failing test kills the mutant; no cache, no CI strictness.
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider {tests}"


def _config(s: Slice) -> str:
    command = _command(s)
    modules = ", ".join(f'"{m}"' for m in s.modules)
    return (
        "[cosmic-ray]\n"
        f"module-path = [{modules}]\n"
        f"timeout = {s.timeout}\n"
        "excluded-modules = []\n"
        f'test-command = "{command}"\n\n'
        '[cosmic-ray.distributor]\nname = "local"\n'
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.pop("PYTHONPATH", None)
    return env


def _run(cmd: list[str], cwd: Path, timeout: float | None = None) -> int:
    """Run *cmd* in its own process group; at *timeout* stop the whole group
    (cosmic-ray, its pytest and any gunicorn or redis-server a test started)
    by its id: SIGTERM, then SIGKILL 10 s later. -1: the time box closed."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), start_new_session=True)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(wait)
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
        proc.wait()
        return -1


def prepare(s: Slice, *, fresh: bool) -> Path:
    """The slice's folder, with a session matching the current modules."""
    folder = WORK / s.name
    folder.mkdir(parents=True, exist_ok=True)
    session, stamp = folder / "session.sqlite", folder / "sources.sha256"
    digest = _sources_hash(s)
    stale = fresh or not session.exists() or not stamp.exists() or stamp.read_text() != digest
    _copy_repo(folder / "src")
    (folder / "config.toml").write_text(_config(s))
    if stale:
        session.unlink(missing_ok=True)
        (folder / "baseline.ok").unlink(missing_ok=True)
        rc = _run(["cosmic-ray", "init", str(folder / "config.toml"), str(session)], folder / "src")
        if rc != 0:
            raise SystemExit(f"cosmic-ray init failed ({rc})")
        # Lines marked "# pragma: no mutate" (documented equivalents) are skipped.
        _run(["cr-filter-pragma", str(session)], folder / "src")
        stamp.write_text(digest)
    # Every run: equivalents found since (EQUIVALENTS) are not tested again.
    skip_annotations(session, folder / "src")
    return folder


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions (line 1-based, column 0-based) of every
    annotation in *path*: parameters, returns, annotated assignments."""
    import ast

    spans = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        anns: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            anns.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            anns.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            anns.append(node.annotation)
        for a in anns:
            if a is not None and a.end_lineno is not None and a.end_col_offset is not None:
                spans.append(((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)))
    return spans


def skip_annotations(session: Path, src: Path) -> int:
    """Mark pending mutants inside annotations, and known equivalents
    (:func:`equivalent`), as skipped: every module starts with
    ``from __future__ import annotations``, so annotations are never
    evaluated and such a mutant (``str | None`` → ``str + None``) is
    equivalent. Returns how many were skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    cache: dict[Path, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            for m in item.mutations:
                path = src / m.module_path
                if "from __future__ import annotations" not in path.read_text("utf-8"):
                    continue
                spans = cache.setdefault(path, _annotation_spans(path))
                start, end = tuple(m.start_pos), tuple(m.end_pos)
                eq = equivalent(m, src)
                if eq is not None or any(a <= start and end <= b for a, b in spans):
                    db.set_result(
                        item.job_id,
                        WorkResult(
                            output=f"equivalent: {eq.reason}"
                            if eq is not None
                            else "in an annotation (never evaluated): equivalent",
                            test_outcome=None,
                            diff=None,
                            worker_outcome=WorkerOutcome.SKIPPED,
                        ),
                    )
                    skipped += 1
                    break
    return skipped


def counts(session: Path, src: Path | None = None) -> dict[str, int]:
    """Mutants killed, survived, incompetent and pending in *session*;
    with *src*, survivors listed in :data:`EQUIVALENTS` count as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    out = {"killed": 0, "survived": 0, "incompetent": 0, "skipped": 0, "pending": 0}
    with use_db(str(session), WorkDB.Mode.open) as db:
        for _item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                out["skipped"] += 1
            elif result.test_outcome == TestOutcome.KILLED:
                out["killed"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                known = src is not None and any(equivalent(m, src) for m in _item.mutations)
                out["skipped" if known else "survived"] += 1
            else:
                out["incompetent"] += 1
        out["pending"] = sum(1 for _ in db.pending_work_items)
    return out


def report(s: Slice, folder: Path) -> str:
    """The slice's score line; survivors' diffs go to survivors.txt."""
    session = folder / "session.sqlite"
    # The working tree's modules when they are the session's (the copy holds
    # a mutant while a run is on), else the copy's.
    stamp = folder / "sources.sha256"
    current = stamp.exists() and stamp.read_text() == _sources_hash(s)
    c = counts(session, ROOT if current else folder / "src")
    tested = c["killed"] + c["survived"]
    score = f"{100 * c['killed'] / tested:.1f}%" if tested else "-"
    with open(folder / "survivors.txt", "w") as out:
        subprocess.run(
            ["cr-report", "--surviving-only", "--show-diff", str(session)],
            stdout=out, stderr=subprocess.STDOUT, env=_env(), check=False,
        )  # fmt: skip
    return (
        f"{s.name}: score {score} ({c['killed']} killed / {tested} tested), "
        f"{c['survived']} survived, {c['incompetent']} incompetent, "
        f"{c['skipped']} skipped (annotations, known equivalents, no mutate),"
        f" {c['pending']} pending; "
        f"survivors: {folder / 'survivors.txt'}"
    )


def retest_survivors(s: Slice, folder: Path) -> None:
    """Test the survivors again, in the slice's copy (the current
    directory, with the tests as they are now): after a test was written
    to kill them. Known equivalents are left alone. Runs in a child
    process started by :func:`main` (its time box stops it)."""
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    session, src = folder / "session.sqlite", folder / "src"
    with use_db(str(session), WorkDB.Mode.open) as db:
        survivors = [
            item
            for item, result in db.completed_work_items
            if result.test_outcome == TestOutcome.SURVIVED
            and not any(equivalent(m, src) for m in item.mutations)
        ]
    print(f"{s.name}: {len(survivors)} survivors to test again", flush=True)
    for item in survivors:
        result = mutate_and_test(item.mutations, _command(s), s.timeout)
        with use_db(str(session), WorkDB.Mode.open) as db:
            db.set_result(item.job_id, result)
        m = item.mutations[0]
        outcome = result.test_outcome or result.worker_outcome
        print(f"  {m.module_path}:{m.start_pos[0]} {m.operator_name}: {outcome}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python scripts/mutation.py", description=__doc__.split("\n")[0]
    )
    p.add_argument("slice", nargs="?", choices=sorted(SLICES), help="the slice to run")
    p.add_argument("--list", action="store_true", help="list the slices")
    p.add_argument("--minutes", type=float, default=20.0, help="time box for this run (20)")
    p.add_argument("--report", action="store_true", help="only print the score so far")
    p.add_argument("--fresh", action="store_true", help="start the slice's session over")
    p.add_argument("--count", action="store_true", help="only create the session, count mutants")
    p.add_argument(
        "--retest-survivors",
        action="store_true",
        help="only test the survivors again (after adding tests that should kill them)",
    )
    p.add_argument("--retest-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list or not args.slice:
        for s in SLICES.values():
            print(f"{s.name:11} {', '.join(s.modules)}\n{'':11} tests: {' '.join(s.tests)}")
            print(f"{'':11} {s.note}")
        return 0
    s = SLICES[args.slice]
    if args.report:
        print(report(s, WORK / s.name))
        return 0
    if args.retest_child:  # in the slice's copy, started below
        retest_survivors(s, WORK / s.name)
        return 0
    folder = prepare(s, fresh=args.fresh)
    if args.count:
        print(f"{s.name}: {counts(folder / 'session.sqlite')}")
        return 0
    src = folder / "src"
    if not (folder / "baseline.ok").exists():
        t0 = time.monotonic()
        rc = _run(["cosmic-ray", "baseline", str(folder / "config.toml")], src)
        if rc != 0:
            raise SystemExit(f"the unmutated tests fail ({rc}): fix them first")
        (folder / "baseline.ok").write_text(f"{time.monotonic() - t0:.1f}\n")
    if args.retest_survivors:
        cmd = [sys.executable, str(Path(__file__).resolve()), s.name, "--retest-child"]
        rc = _run(cmd, src, timeout=args.minutes * 60)
        print("time box reached: run again to resume" if rc == -1 else f"retest: {rc}")
        print(report(s, folder))
        return 0
    pending = counts(folder / "session.sqlite")["pending"]
    per = float((folder / "baseline.ok").read_text())
    print(
        f"{s.name}: {pending} mutants pending; the unmutated tests took {per:.0f} s, so about"
        f" {pending * per / 3600:.1f} h at most (a killed mutant stops at its first failure);"
        f" this run stops after {args.minutes:g} min",
        flush=True,
    )
    rc = _run(
        ["cosmic-ray", "exec", str(folder / "config.toml"), str(folder / "session.sqlite")],
        src,
        timeout=args.minutes * 60,
    )
    print("time box reached: run again to resume" if rc == -1 else f"cosmic-ray exec: {rc}")
    print(report(s, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
