"""gunicorn's entry: `gunicorn -c gunicorn.conf.py wsgi:app` (gevent workers patch first)."""

from gevent import monkey

monkey.patch_all()

from chatgenius.factory import create_app  # noqa: E402

app = create_app()
