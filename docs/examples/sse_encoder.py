"""The encoder rules, as exact bytes."""

from flask_streaming import ServerSentEvent

# data is split on CR, LF and CRLF only; each piece gets its own data: line.
assert ServerSentEvent("line 1\nline 2").encode() == b"data: line 1\ndata: line 2\n\n"

# Other "line breaks" (U+2028, U+0085, form feed) stay inside the data.
assert ServerSentEvent("a\u2028b").encode() == "data: a\u2028b\n\n".encode()

# An empty string still dispatches an event; a trailing newline survives.
assert ServerSentEvent("").encode() == b"data:\n\n"
assert ServerSentEvent("x\n").encode() == b"data: x\ndata:\n\n"

# Anything else is compact JSON; id=0 is kept; fields come in a fixed order.
assert ServerSentEvent({"n": 1}, event="update", id=0).encode() == (
    b'id: 0\nevent: update\ndata: {"n":1}\n\n'
)

# retry and comments without data: the browser applies them, dispatches nothing.
assert ServerSentEvent(retry=5000).encode() == b"retry: 5000\n\n"
assert ServerSentEvent(comment="keep-alive").encode() == b": keep-alive\n\n"

# No field injection: CR, LF or NUL in event, id or comment is refused.
try:
    ServerSentEvent("hi", event="update\ndata: forged")
except ValueError:
    pass
else:
    raise AssertionError("a newline in event must be refused")
