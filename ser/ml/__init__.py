"""Machine learning: the pipeline, speaker adaptation, evaluation, the bundle, training
and the evaluation report."""
