"""Names and limits that the API, the workers and the command line share.

One definition per name, so the layers cannot drift apart (before this module the protocols
were spelled in five files and the model-version pattern disagreed between two). Imports
nothing of the project and no third-party library: every layer may import it.
"""

from __future__ import annotations

# Evaluation
PROTOCOLS = ("stratified", "speaker")
ADAPT_MODES = ("off", "speaker", "both")
ADAPT_CHOICES = ("auto", *ADAPT_MODES)
FEATURE_SETS = ("default", "seed")
CLASSIFIERS = ("lda", "logreg", "svc")
REPEATS = 10  # stratified CV shuffles of `ser evaluate` (seeds 42, 43, ...)
TRAIN_REPEATS = 1  # the prototype's seed-42 split: a warm EMO-DB training stays under 10 s
MAX_TRAIN_REPEATS = 20

# Jobs
QUEUED = "QUEUED"
RUNNING = "RUNNING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)
KINDS = ("train", "predict", "score")
MAX_WAIT = 30  # seconds a GET /jobs/<id>?wait= may hold a request

# Queues and task names (Celery routes on these; the API only sends)
TRAIN_QUEUE = "ser.train"
PREDICT_QUEUE = "ser.predict"  # predictions, bulk scoring and featurization chunks
QUEUES = (TRAIN_QUEUE, PREDICT_QUEUE)
TASK_TRAIN = "ser.train"
TASK_PREDICT = "ser.predict"
TASK_SCORE = "ser.score"  # lists a folder and fans out score chunks
TASK_SCORE_CHUNK = "ser.score_chunk"
TASK_FEATURIZE_CHUNK = "ser.featurize_chunk"  # fills the feature cache for a training
TASK_WARM_UP = "ser.warm_up"  # a worker's first delivery, sent to itself when it starts
JOB_TASKS = (TASK_TRAIN, TASK_PREDICT, TASK_SCORE)  # the one message that carries a job

# Models
MODEL_VERSION_PATTERN = r"^v[0-9]{1,9}$"
