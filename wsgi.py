"""gunicorn's entry in the repository: `gunicorn -c gunicorn.conf.py wsgi:app` (the app is chatgenius.wsgi's)."""

from chatgenius.wsgi import app

__all__ = ["app"]
