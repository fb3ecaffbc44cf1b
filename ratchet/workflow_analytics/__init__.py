"""Analytics of Temporal workflows from their event histories: the steps of every execution (activities,
child workflows, timers), what each waited and worked, and the critical path that set each execution's end.

Pure where it can be (``steps``, ``critical_path``, ``summary``); the fetching is in ``fetch``.
"""
