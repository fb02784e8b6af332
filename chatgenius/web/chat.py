"""POST /typing, GET /presence/<channel>, POST /subscriptions: thin over chatgenius.chat."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from ..chat import Chat
from .common import identity, json_body

bp = Blueprint("chat", __name__)


def chat() -> Chat:
    """This app's Chat use cases."""
    return current_app.extensions["chatgenius.chat"]


@bp.post("/typing")
def typing() -> tuple[Response, int]:
    """202 either way: typing is best-effort, and a throttled one is dropped quietly."""
    sent = chat().typing(identity(), json_body())
    return jsonify({"dropped": not sent}), 202


@bp.get("/presence/<channel>")
def presence(channel: str) -> Response:
    """GET /presence/<channel>: the users online in a channel the caller may read."""
    return jsonify({"channel": channel, "users": chat().online(identity(), channel)})


@bp.post("/subscriptions")
def subscriptions() -> Response:
    """POST /subscriptions: add or drop channels of an open stream."""
    return jsonify(chat().change_subscriptions(identity(), json_body()))
