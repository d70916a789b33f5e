import sys

from .procs import die_with_parent

die_with_parent()  # a job started by a queue worker ends with it (pama.procs)

if len(sys.argv) > 1 and sys.argv[1] == "worker" and "--local" in sys.argv and "--lock-fd" not in sys.argv:
    # the app's local worker takes its queue's lock before the heavy imports (seconds to minutes on a busy
    # machine), so a second one started meanwhile exits at once instead of loading torch first
    from .paths import default_db_url, home
    from .procs import take_worker_lock

    _fd = take_worker_lock(default_db_url(), home())
    if _fd == -1:
        print("a local worker already serves this queue", flush=True)
        raise SystemExit(0)
    if _fd is not None:
        sys.argv += ["--lock-fd", str(_fd)]

from .cli import main  # noqa: E402

raise SystemExit(main())
