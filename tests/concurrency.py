"""Running a test's work on several threads at once."""

import threading


def run_threads(work, count):
    """work(i) on `count` threads at once (i = 0 .. count - 1); the first exception any of them
    raised is raised here, after all have finished."""
    errors = []

    def guarded(i):
        try:
            work(i)
        except BaseException as exc:  # reported below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
