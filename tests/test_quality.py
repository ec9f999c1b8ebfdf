"""Swap quality during training (facejax/quality.py): held-out figures in metrics.jsonl."""


def test_held_out_quality_during_training(grid_faces, tmp_path):
    from facejax.experiments import deepfakes_original
    from facejax import train
    from facejax.training import run_files
    c = deepfakes_original.get_config("tiny")
    c.data.a, c.data.b = grid_faces["a"], grid_faces["b"]
    c.num_steps, c.eval_every, c.preview_every, c.quality_every = 4, 0, 0, 2
    train.train(c, str(tmp_path))
    rows = [r for r in run_files.read_history(str(tmp_path)) if "quality/psnr_a" in r]
    assert [r["step"] for r in rows] == [2, 4]
    for r in rows:
        assert 5 < r["quality/psnr_a"] < 40 and 0 < r["quality/ssim_b"] < 1
        assert 0 < r["quality/id_dist_a2b"] < 2 and 0 <= r["quality/id_retrieval_b2a"] <= 1
