"""Redis-backed state the API and the workers share: jobs, the model registry, results,
the outbox, the feature cache, worker heartbeats and speaker statistics. No Flask, no Celery."""
