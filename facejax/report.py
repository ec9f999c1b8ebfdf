"""The evaluation report: headline figures, sample grids, plots over frames, report.html."""

from __future__ import annotations

import html
import json
import math
import os

import cv2
import numpy as np

from facejax import images


def summary(metrics: dict) -> dict:
    """The headline figures (no per-frame series)."""
    out = {}
    for d in ("a2b", "b2a"):
        m = metrics[d]
        out[d] = {
            "faces": m["faces"],
            "psnr": m["reconstruction"]["psnr_mean"], "ssim": m["reconstruction"]["ssim_mean"],
            "detail_correlation": m["reconstruction"]["detail_correlation"],
            "identity_retrieval": m["identity"]["retrieval_accuracy"],
            "distance_to_target": m["identity"]["mean_distance_to_target"],
            "distance_to_source": m["identity"]["mean_distance_to_source"],
            "share_under_0.6": m["identity"]["share_same_person_as_target"],
            "landmark_nme": m["expression"]["landmark_nme_mean"],
            "mouth_error": m["expression"].get("mouth_opening_error", math.nan),
            "mouth_correlation": m["expression"]["mouth_opening_correlation"],
            "jitter_source": m["steadiness"]["jitter_source"],
            "jitter_swap": m["steadiness"]["jitter_swap"],
            "sharpness_ratio": m["sharpness"]["ratio_to_target"],
            "sharpness_px": m["sharpness"].get("crop_px"),
        }
    return out


def _plots(folder: str, metrics: dict) -> list[tuple[str, str]]:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    out = []
    for d in ("a2b", "b2a"):
        m = metrics[d]
        x = m["frame_index"]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
        ax = axes[0, 0]
        ax.plot(x, m["reconstruction"]["per_frame_psnr"], ".-")
        ax.set(title=f"reconstruction of {d[0].upper()}: PSNR", xlabel="frame", ylabel="dB")
        ax2 = ax.twinx()
        ax2.plot(x, m["reconstruction"]["per_frame_ssim"], ".-", color="tab:orange")
        ax2.set_ylabel("SSIM", color="tab:orange")
        ax = axes[0, 1]
        ax.plot(x, m["identity"]["per_frame_distance_to_target"], ".-",
                label=f"to target {d[-1].upper()}")
        ax.plot(x, m["identity"]["per_frame_distance_to_source"], ".-",
                label=f"to source {d[0].upper()}")
        ax.axhline(metrics["same_person_threshold"], color="k", ls="--", lw=1,
                   label="same-person threshold")
        ax.set(title="identity: embedding distance of the swap", xlabel="frame")
        ax.legend(fontsize=8)
        ax = axes[1, 0]
        ax.plot(x, m["expression"]["per_frame_mouth_source"], ".-", label="source")
        ax.plot(x, m["expression"]["per_frame_mouth_swap"], ".-", label="swap")
        ax.set(title="mouth opening (eye distances)", xlabel="frame")
        ax.legend(fontsize=8)
        ax = axes[1, 1]
        ax.plot(x, m["expression"]["per_frame_nme"], ".-")
        ax.set(title="landmark error source vs swap (NME)", xlabel="frame")
        name = f"plots_{d}.png"
        fig.savefig(os.path.join(folder, name), dpi=80)
        plt.close(fig)
        out.append((d, name))
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.4g}")
    return html.escape(str(v))


def write_report(folder: str, metrics: dict, results: dict, config) -> None:
    """metrics.json, sample grids, plots and report.html into `folder`."""
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1, default=float)
    grids = []
    for name, d in (("a", "a2b"), ("b", "b2a")):
        rows = [np.concatenate([s, np.full((s.shape[0], 4, 3), 255, np.uint8), w,
                                np.full((s.shape[0], 4, 3), 255, np.uint8), r], axis=1)
                for s, w, r in results[name].samples]
        g = np.concatenate(rows, axis=0)
        scale = max(1, 128 // g.shape[1] * 3) if g.shape[1] < 384 else 1
        g = cv2.resize(g, (g.shape[1] * scale, g.shape[0] * scale),
                       interpolation=cv2.INTER_NEAREST)
        source, target = d[0].upper(), d[2].upper()
        g = images.with_header(g, [f"{source} (source)", f"swapped to {target}",
                            f"{source} reconstructed"])
        file = f"samples_{d}.png"
        images.write_image(os.path.join(folder, file), g)
        grids.append((d, file))
    plots = _plots(folder, metrics)
    head = summary(metrics)
    cols = list(head["a2b"])
    table = "<tr><th>direction</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    table += "</tr>" + "".join(
        f"<tr><td>{d}</td>" + "".join(f"<td>{_fmt(head[d][c])}</td>" for c in cols) + "</tr>"
        for d in head)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>facejax evaluation</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px 8px}table{border-collapse:collapse}img{max-width:100%}</style></head><body>",
        f"<h1>facejax evaluation: {html.escape(metrics['task'])} at step "
        f"{_fmt(metrics['step'])}</h1>",
        f"<p>model {html.escape(metrics['model'])}<br>A: {html.escape(metrics['inputs']['a'])}"
        f"<br>B: {html.escape(metrics['inputs']['b'])}<br>reference sets: "
        f"{html.escape(json.dumps(metrics['reference_sets']))}</p>",
        "<h2>Summary</h2><table>", table, "</table>",
        "<p>psnr/ssim: each face through its own path (A→A, B→B). identity_retrieval: share of "
        "swaps whose nearest reference identity is the target; distances are dlib "
        "face-recognition embedding distances to the nearest reference face (same person "
        f"below {metrics['same_person_threshold']}). landmark_nme: source vs swap landmarks / "
        "outer-eye-corner distance. mouth_error: mean |opening of swap − opening of source| "
        "(inner lips, in eye distances); mouth_correlation: of the two over the frames (noise "
        "when the source's mouth hardly moves). jitter: frame-to-frame landmark acceleration in eye "
        "distances. sharpness_ratio: Laplacian variance in the swapped face over the target's "
        "real faces', both cropped at the model's own resolution (sharpness_px, nothing "
        "upsampled; high-frequency error counts too); detail_correlation: of the "
        "reconstructions' Laplacian with the input's, in the face (noise and blur score low)."
        "</p>",
    ]
    for (d, g), (_, p) in zip(grids, plots):
        parts += [f"<h2>{d}: source | swap | reconstruction</h2>", f"<img src='{g}'>",
                  f"<h3>{d} over frames</h3>", f"<img src='{p}'>"]
    parts += ["<h2>Run config</h2><pre>",
              html.escape(json.dumps(json.loads(config.to_json_best_effort()), indent=1)),
              "</pre></body></html>"]
    with open(os.path.join(folder, "report.html"), "w") as f:
        f.write("\n".join(parts))
