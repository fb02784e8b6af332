"""Minimal flask-sse 1.0.0 app, as its README shows it.

GET  /stream?channel=NAME   -> SSE stream (flask-sse's own view)
POST /publish/NAME          -> sse.publish(<JSON body>, channel=NAME)   (the HTTP publish path)

ChatGenius bench copy: every system is published to over HTTP, so the
body is parsed as JSON and published as a dict, as an app would (the shared copy
published the raw string, which flask-sse would JSON-quote; the shared harness
published straight to Redis instead).
"""
import os

from flask import Flask, request
from flask_sse import sse

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ.get("REDIS_URL", "redis://127.0.0.1:16479")
app.register_blueprint(sse, url_prefix="/stream")


@app.post("/publish/<channel>")
def publish(channel):
    sse.publish(request.get_json(force=True), channel=channel)
    return "ok\n"


@app.get("/health")
def health():
    return "ok\n"
