"""Settings every experiment shares: the data block and the training-loop cadence."""

import ml_collections


def data(load_size: int, identities=("a", "b"), mask: str | None = None
         ) -> ml_collections.ConfigDict:
    """Extraction directories per identity (facejax extract) and how they are loaded; `mask`,
    for a family that trains inside a face mask, the mask it trains inside by default."""
    c = ml_collections.ConfigDict(dict(
        # Extraction folders (facejax extract): one, or several comma-separated (globs too),
        # e.g. several clips of one person; FOLDER@W draws that folder's faces in share W.
        **{name: f"runs/faces_{name}" for name in identities},
        # Folders of many people's faces that every identity reads instead: a run that trains
        # the shared parts on generic faces, to start the real runs from (--config.init_from).
        pretrain="",
        load_size=load_size,       # crops are loaded at this side
        per_process=True,          # each process reads its own slice (see data/pipeline.py)
        data_dir="",               # TFDS data_dir; empty: inside each extraction directory
        # Input worker processes that decode, resize and augment the coming batches; 0: threads
        # of the training process; -1: half the cores (data/pipeline.py default_workers).
        workers=-1,
        yaw_bins=0,  # >0: sample evenly over head yaw in this many bins (DeepFaceLab: 128)
        degrade=dict(prob=0.0, max_blur=0.0, jpeg_min=100),
    ))
    if mask is not None:
        # The mask the loss is taken inside: "hull" (the landmark hull), "xseg" (each face's
        # mask from facejax xseg apply: what hides the face is left out), or "" (none).
        c.mask = mask
    return c


def loop(c: ml_collections.ConfigDict, *, batch_size: int, num_steps: int, log_every: int,
         every: int, eval_batches: int) -> None:
    """Batch, length, and how often to log, evaluate, preview and checkpoint."""
    c.batch_size = batch_size      # per identity, over all devices and processes
    c.num_steps = num_steps
    c.log_every = log_every
    c.eval_every = every
    c.eval_batches = eval_batches
    c.preview_every = every
    # Swap-quality figures (facejax/evaluate.py: PSNR/SSIM of reconstructions, identity
    # distance of swaps) on a held-out batch, to TensorBoard and metrics.jsonl; 0 = off.
    c.quality_every = 0
    c.checkpoint_every = every
    c.keep_checkpoints = 3
    # On a non-finite loss or gradient: reload the last checkpoint and go on with the learning
    # rate times rollback_lr_factor, at most `rollback` times; 0 = stop with exit 3.
    c.rollback = 0
    c.rollback_lr_factor = 0.5
    c.init_from = ""               # a workdir whose weights start this run
