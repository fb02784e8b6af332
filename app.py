"""The embedded default: `python app.py` serves everything in one process.

In-memory bus, dev auth (the app mints its own tokens), gevent's WSGI server on
http://127.0.0.1:8000 (`BIND` changes it). For production use gunicorn (wsgi.py)
with REDIS_URL. The same server is `chatgenius-realtime serve` from an installed package.
"""

from gevent import monkey

monkey.patch_all()

from chatgenius.embedded import serve  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(serve())
