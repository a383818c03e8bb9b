"""Chat rooms: every room is a channel, a POST publishes a message, only a
room's members may read it, and a reconnecting page gets what it missed.

Hook it into an app with ``register(app, streaming)`` (after
``Streaming(app)``); ``/chat`` is the page. Rooms ``general`` and ``random``
are open to anyone who joins; ``team`` needs the invite code ``flask``.

* identity: a name, kept in a signed cookie (an app with real accounts uses
  its login here);
* membership: a small JSON file in the instance folder, shared by every
  gunicorn worker;
* authorization: :meth:`~flask_streaming.Streaming.authorize_channel`
  decides for ``chat-*`` channels and leaves every other channel to the hook
  that was there before (the demo registers several examples);
* history: the page subscribes with ``last_event_id=0``, so the broker
  replays the room's recent messages (``STREAMING_HISTORY_SIZE``), and after
  a dropped connection the client's ``Last-Event-ID`` replays what it missed.
  With several workers or machines use ``STREAMING_BROKER_URL=redis://...``.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Flask, abort, current_app, jsonify, render_template, request
from itsdangerous import BadSignature, URLSafeSerializer

from flask_streaming import Streaming

#: slug -> (title, topic, invite code or None for an open room)
ROOMS: dict[str, tuple[str, str, str | None]] = {
    "general": ("General", "Anything goes.", None),
    "random": ("Random", "Links, jokes, off-topic.", None),
    "team": ("Team", "Members only (invite code: flask).", "flask"),
}
CHANNEL_PREFIX = "chat-"
COOKIE = "chat_user"
MAX_TEXT = 2000


def _folder() -> Path:
    path = Path(current_app.instance_path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _serializer() -> URLSafeSerializer:
    """Signs the name cookie: with the app's secret key, else with a key
    made once in the instance folder (so every worker agrees)."""
    secret = current_app.secret_key
    if not secret:
        key_file = _folder() / "chat-secret.key"
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        secret = key_file.read_text().strip()
        if not secret:  # another worker is writing it right now
            time.sleep(0.05)
            secret = key_file.read_text().strip()
    return URLSafeSerializer(secret, salt="flask-streaming-chat")


def current_user() -> str | None:
    """The name in the signed cookie, if any."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        name = _serializer().loads(raw)
    except BadSignature:
        return None
    return name if isinstance(name, str) else None


def _members_file() -> Path:
    return _folder() / "chat-members.json"


def members(room: str) -> set[str]:
    """Who joined *room*."""
    try:
        data = json.loads(_members_file().read_text("utf-8"))
    except (OSError, ValueError):
        data = {}
    return set(data.get(room, []))


def _add_member(room: str, user: str) -> None:
    path = _members_file()
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        data = {}
    names = set(data.get(room, []))
    names.add(user)
    data[room] = sorted(names)
    tmp = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data), "utf-8")
    os.replace(tmp, path)  # atomic: a reader sees the old or the new file


def is_member(user: str | None, room: str) -> bool:
    return user is not None and room in ROOMS and user in members(room)


def register(app: Flask, streaming: Streaming) -> None:
    """Add the chat page, its JSON API and the channel authorization to *app*."""
    previous = streaming.hooks.channel  # the hook set so far (or the default)

    @streaming.authorize_channel
    def authorize(channel: str, action: str) -> bool:
        if not channel.startswith(CHANNEL_PREFIX):
            return bool(previous(channel, action))
        return is_member(current_user(), channel[len(CHANNEL_PREFIX) :])

    def room_or_404(room: str) -> tuple[str, str, str | None]:
        if room not in ROOMS:
            abort(404)
        return ROOMS[room]

    def error(status: int, code: str, message: str) -> Any:
        rv = jsonify({"error": code, "message": message})
        rv.status_code = status
        return rv

    @app.get("/chat")
    def chat_page() -> str:
        return render_template("chat.html", rooms=ROOMS, user=current_user())

    @app.get("/chat/rooms")
    def chat_rooms() -> Any:
        user = current_user()
        return jsonify(
            {
                "user": user,
                "rooms": [
                    {
                        "slug": slug,
                        "title": title,
                        "topic": topic,
                        "invite": code is not None,
                        "member": is_member(user, slug),
                        "channel": CHANNEL_PREFIX + slug,
                    }
                    for slug, (title, topic, code) in ROOMS.items()
                ],
            }
        )

    @app.post("/chat/login")
    def chat_login() -> Any:
        name = str((request.get_json(silent=True) or {}).get("name", "")).strip()[:32]
        if not name or not name.isprintable():
            return error(400, "bad_name", "Pick a name (1-32 printable characters).")
        rv = jsonify({"user": name})
        rv.set_cookie(COOKIE, _serializer().dumps(name), httponly=True, samesite="Lax")
        return rv

    @app.post("/chat/rooms/<room>/join")
    def chat_join(room: str) -> Any:
        _title, _topic, code = room_or_404(room)
        user = current_user()
        if user is None:
            return error(401, "no_user", "Log in with a name first.")
        given = (request.get_json(silent=True) or {}).get("code")
        if code is not None and given != code and not is_member(user, room):
            return error(403, "bad_invite", "This room needs an invite code.")
        if not is_member(user, room):
            _add_member(room, user)
            streaming.publish(CHANNEL_PREFIX + room, {"user": user}, event="join")
        return jsonify({"room": room, "member": True})

    @app.post("/chat/rooms/<room>/messages")
    def chat_send(room: str) -> Any:
        room_or_404(room)
        user = current_user()
        if not is_member(user, room):
            return error(403, "not_member", "Join the room to write in it.")
        text = str((request.get_json(silent=True) or {}).get("text", "")).strip()
        if not text:
            return error(400, "empty", "Say something.")
        message = {"user": user, "text": text[:MAX_TEXT], "at": time.time()}
        event_id = streaming.publish(CHANNEL_PREFIX + room, message, event="message")
        return jsonify({"id": event_id})
