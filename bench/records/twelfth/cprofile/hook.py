# Appended to gunicorn.conf.py of a scratch worktree, after renaming that file's own
# `post_worker_init` to `_post_worker_init`: cProfile over every greenlet of a worker for 10 s,
# PROF_AFTER s (default 25) after the worker starts; the dump goes to $PROF_DIR (default: the
# worktree's directory, where gunicorn runs), one file per worker.
import cProfile
import os

import gevent


def post_worker_init(worker):
    """The renamed original, then a greenlet that profiles the worker for 10 s."""
    _post_worker_init(worker)  # noqa: F821 (the renamed original, above it in gunicorn.conf.py)

    def run():
        gevent.sleep(float(os.environ.get("PROF_AFTER", "25")))
        p = cProfile.Profile()
        p.enable()
        gevent.sleep(10)
        p.disable()
        p.dump_stats(os.path.join(os.environ.get("PROF_DIR", "."), f"cprof-{os.getpid()}.pstats"))

    gevent.spawn(run)
