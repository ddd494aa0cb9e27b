"""The Celery tasks, named explicitly; each calls the work in worker.train, worker.predict or
worker.score."""

from __future__ import annotations

from ser.contract import (
    TASK_FEATURIZE_CHUNK,
    TASK_PREDICT,
    TASK_SCORE,
    TASK_SCORE_CHUNK,
    TASK_TRAIN,
    TASK_WARM_UP,
)
from worker import predict as predict_work
from worker import score as score_work
from worker import train as train_work
from worker.app import app, context
from worker.producer import TaskMessages, publish

messages = TaskMessages(app)


def send(name: str, args: list, pipe=None) -> None:
    """Publish task ``name`` (routed by celeryconfig) with JSON ``args``, via the outbox (in
    the caller's transaction ``pipe`` when given)."""
    publish(messages, context().outbox, name, args, pipe=pipe)


@app.task(name=TASK_TRAIN, bind=True)
def train(self, job_id: str, params: dict) -> dict:
    """Train a model on a dataset under the data root and make it current."""
    host = self.request.hostname or ""
    return train_work.run_train(context(), job_id, params, worker=host, send=send)


@app.task(name=TASK_PREDICT, bind=True)
def predict(self, job_id: str, params: dict) -> dict:
    """Predict the emotion of one recording (an upload blob or a file under the data root)."""
    req = self.request
    return predict_work.run_predict(
        context(), job_id, params, req.hostname or "", task_id=req.id, send=send
    )


@app.task(name=TASK_SCORE, bind=True)
def score(self, job_id: str, params: dict) -> dict:
    """List a folder under the data root and send its score chunks."""
    return score_work.run_score(context(), job_id, params, send, worker=self.request.hostname or "")


@app.task(name=TASK_SCORE_CHUNK, bind=True)
def score_chunk(self, job_id: str, params: dict) -> dict:
    """Score one chunk of a folder; the chunk that completes the last file ends the job (the
    one that completes pass 1 of a job normalised by speakers sends pass 2)."""
    host = self.request.hostname or ""
    return score_work.run_score_chunk(context(), job_id, params, worker=host, send=send)


@app.task(name=TASK_FEATURIZE_CHUNK, bind=True)
def featurize_chunk(self, job_id: str, params: dict) -> dict:
    """Fill the shared feature cache for one chunk of a training set."""
    host = self.request.hostname or ""
    return train_work.run_featurize_chunk(context(), job_id, params, worker=host)


@app.task(name=TASK_WARM_UP)
def warm_up() -> None:
    """Nothing: the message itself is the work (worker.app sends one to each of its queues
    when it starts, so the first job is not the first delivery)."""
