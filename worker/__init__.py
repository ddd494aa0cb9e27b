"""Celery workers: ``worker.app`` (the Celery app), ``worker.tasks`` (thin tasks by name),
``worker.runner`` (the work, as plain functions), ``worker.celeryconfig`` (every setting).
"""
