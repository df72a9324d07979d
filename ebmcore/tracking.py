"""Training metrics: a CSV file, a JSON-lines file, TensorBoard events and a PNG of the curves."""
from __future__ import annotations

import csv
import json
from pathlib import Path


class MetricsLogger:
    """Appends one row of scalar metrics per call to ``metrics.csv`` and ``metrics.jsonl``
    in ``run_dir``, and to TensorBoard (``run_dir/tb``) when ``tensorboard`` is True.

    On resume the files are truncated to rows with ``step <= start_step``, and
    :meth:`rewind` does the same when the divergence guard restores an earlier state, so
    the log holds every step once, from the run that produced the current state.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, start_step: int = 0):
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path, self.json_path = self.dir / "metrics.csv", self.dir / "metrics.jsonl"
        self.tensorboard, self.writer = tensorboard, None
        self.rewind(start_step)

    def rewind(self, step: int) -> None:
        """Drop every logged row after ``step`` (a resume or a restore continues from there)."""
        self._truncate(step)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            if self.writer is not None:
                self.writer.close()
            self.writer = SummaryWriter(str(self.dir / "tb"), purge_step=step + 1 if step else None)

    def _truncate(self, start_step: int) -> None:
        rows = read_metrics(self.json_path) if self.json_path.exists() else []
        rows = [r for r in rows if r["step"] <= start_step]
        self.json_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.csv_path.unlink(missing_ok=True)
        for row in rows:
            self._write_csv(row)

    def _write_csv(self, row: dict) -> None:
        new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        try:
            self._write_csv(row)
            with open(self.json_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
        except OSError as err:  # a full disk: name the file (a cut row is dropped at the next resume)
            if err.filename is None:
                raise OSError(err.errno, err.strerror, str(self.dir / "metrics.*")) from err
            raise
        if self.writer is not None:
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a ``metrics.jsonl`` file; a last row cut short (a kill, a full disk) is dropped."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise
    return rows


def plot_curves(run_dir: str | Path, keys: list[str] | None = None) -> Path:
    """Plot the learning curves of ``run_dir/metrics.jsonl`` to ``run_dir/curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    keys = keys or [k for k in ("loss", "energy_obs", "energy_syn", "grad_norm") if rows and k in rows[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, key in zip(axes[0], keys):
        ax.plot(steps, [r.get(key, float("nan")) for r in rows])
        ax.set_title(key)
        ax.set_xlabel("step")
    if "energy_obs" in keys and "energy_syn" in keys:
        ax = axes[0][keys.index("energy_obs")]
        ax.plot(steps, [r["energy_syn"] for r in rows], label="energy_syn")
        ax.legend(["observed", "synthesised"])
        ax.set_title("mean energy")
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
