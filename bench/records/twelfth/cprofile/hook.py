def post_worker_init(worker):  # experiment: call counts under load
    _post_worker_init(worker)
    import cProfile, os, gevent
    def run():
        gevent.sleep(float(os.environ.get("PROF_AFTER", "25")))
        p = cProfile.Profile()
        p.enable()
        gevent.sleep(10)
        p.disable()
        p.dump_stats(f"/work/ab/cprof-{os.getpid()}.pstats")
    gevent.spawn(run)

