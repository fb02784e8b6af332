"""The embedded default: `python app.py` serves everything in one process.

In-memory bus, dev auth (the app mints its own tokens), gevent's WSGI server on
http://127.0.0.1:8000. For production use gunicorn (wsgi.py) with REDIS_URL.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from chatgenius import config  # noqa: E402
from chatgenius.factory import create_app  # noqa: E402


def main() -> None:
    env = dict(os.environ)
    env.setdefault("AUTH_MODE", "dev")
    env.setdefault("BIND", "127.0.0.1:8000")
    settings = config.load(env, workers=1)  # one process, whatever WEB_CONCURRENCY says (it is gunicorn's)
    host, _, port = settings.bind.rpartition(":")
    app = create_app(settings)
    for warning in config.exposure_warnings(settings):
        print(f"warning: {warning}", flush=True)
    bus = "redis" if settings.redis_url else "memory"
    print(f"ChatGenius realtime: http://{host}:{port}/ (bus: {bus}, auth: {settings.auth_mode})", flush=True)
    WSGIServer((host.strip("[]"), int(port)), app, log=None).serve_forever()


if __name__ == "__main__":
    try:
        main()
    except config.ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
