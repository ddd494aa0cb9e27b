"""Speech emotion recognition: the domain library (no Flask, no Celery)."""

__version__ = "0.1.0"
