"""gunicorn config for bench/idle_trace: the project's gunicorn.conf.py plus tracemalloc in the worker.

The worker starts tracemalloc after fork and, when `TRACE_DIR/<name>.req`
appears, dumps a snapshot to `TRACE_DIR/<name>.snap`: that is how a process
outside the worker gets at its Python heap.
"""

import os
import runpy

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
globals().update({k: v for k, v in runpy.run_path(os.path.join(_ROOT, "gunicorn.conf.py")).items() if not k.startswith("__")})
_project_post_worker_init = globals().get("post_worker_init")


def post_worker_init(worker):
    if _project_post_worker_init is not None:
        _project_post_worker_init(worker)
    import tracemalloc

    import gevent

    if os.environ.get("TRACE_FRAMES", "1") != "0":
        tracemalloc.start(int(os.environ.get("TRACE_FRAMES", "1")))
    gevent.spawn(_watch, os.environ["TRACE_DIR"])


def _watch(folder):
    import gc
    import tracemalloc

    import gevent

    while True:
        gevent.sleep(0.2)
        for name in os.listdir(folder):
            if name.endswith(".req"):
                os.remove(os.path.join(folder, name))
                gc.collect()
                target = os.path.join(folder, name[:-4] + ".snap")
                tracemalloc.take_snapshot().dump(target + ".tmp")
                os.rename(target + ".tmp", target)
