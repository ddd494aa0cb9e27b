"""Celery workers: ``worker.app`` (the Celery app and per-process set-up), ``worker.tasks``
(thin tasks by name), the work as plain functions of a ``worker.context.Context``
(``worker.train``, ``worker.predict``, ``worker.score``), ``worker.sweeper`` (republishes lost
messages), ``worker.celeryconfig`` (every setting) and ``worker.producer`` (how tasks are
sent: the only module the API imports).
"""
