"""The pipeline: one module per `dvc.yaml` stage, nothing else."""
