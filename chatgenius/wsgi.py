"""The WSGI entry inside the package: `gunicorn -k chatgenius.gunicorn_worker.PublishWorker chatgenius.wsgi:app`
from an installed wheel (`-k gevent` works too, without the lean publish path).

The repository's top-level wsgi.py re-exports this `app` (`gunicorn -c gunicorn.conf.py wsgi:app`).
"""

from gevent import monkey

monkey.patch_all()  # before anything opens a socket; a no-op under gunicorn's gevent worker, which patched already

from .factory import create_app  # noqa: E402

app = create_app()
