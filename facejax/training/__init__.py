"""The parts of the training job (facejax/train.py holds its loop): `run_files` (the files a run
keeps beside its checkpoints), `inputs` (the training and held-out batches) and `periodic` (the
work done every N steps: log, evaluate, quality, preview, checkpoint)."""
