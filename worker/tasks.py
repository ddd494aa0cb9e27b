"""The Celery tasks, named explicitly; each parses its message and calls worker.runner."""

from __future__ import annotations

from worker import runner
from worker.app import app, context
from worker.celeryconfig import TASK_PREDICT, TASK_TRAIN


@app.task(name=TASK_TRAIN, bind=True)
def train(self, job_id: str, params: dict) -> dict:
    """Train a model on a dataset under the data root and make it current."""
    return runner.run_train(context(), job_id, params, worker=self.request.hostname or "")


@app.task(name=TASK_PREDICT, bind=True)
def predict(self, job_id: str, params: dict) -> dict:
    """Predict the emotion of one recording (an upload blob or a file under the data root)."""
    return runner.run_predict(context(), job_id, params, worker=self.request.hostname or "")
