"""Texture (image) and dynamic-texture (video) synthesis and recovery with the engine's backbones.

``kind: image`` trains the Generative ConvNet on one texture photograph;
``kind: video`` trains the spatial-temporal ConvNet on the simulated water video
(:mod:`ebmcore.patterns`). Both then synthesise new patterns from noise and recover
masked regions (images) or missing frames and regions (videos) by masked Langevin.
Pixel values live in [-1, 1] inside the model and in [0, 1] in the saved files.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .backbones import GenerativeConvNet, SpatialTemporalConvNet
from .config import check, load_config
from .errors import ConfigError
from .imaging import save_gif, save_grid
from .io import load_checkpoint, load_weights, save_tensors
from .learning import TrainConfig, Trainer
from .patterns import TEXTURES, load_texture, wave_field
from .sampling import langevin, scaled_schedule


@dataclass
class PatternData:
    source: str = check("brick", choices=[*TEXTURES, "waves"])
    size: int = check(64, min=8, max=1024)
    frames: int = check(16, min=2, max=1024)  # videos only
    seed: int = 0


@dataclass
class ConvNetSpec:
    widths: list[int] = field(default_factory=lambda: [32, 64])
    kernels: list[int] = field(default_factory=lambda: [7, 5])
    strides: list[int] = field(default_factory=lambda: [2, 2])
    sigma_ref: float = check(1.0, min=1e-3, max=1e3)

    def validate(self, prefix=""):
        if not (len(self.widths) == len(self.kernels) == len(self.strides)) or not self.widths:
            raise ConfigError(f"{prefix}widths, kernels and strides need the same, non-zero length")
        if min(self.widths + self.kernels + self.strides) < 1:
            raise ConfigError(f"{prefix}widths, kernels and strides must be positive")


@dataclass
class PatternExperiment:
    name: str = "texture"
    kind: str = check("image", choices=["image", "video"])
    out_dir: str = "runs"
    num_samples: int = check(4, min=1, max=1024)
    data: PatternData = field(default_factory=PatternData)
    net: ConvNetSpec = field(default_factory=ConvNetSpec)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, prefix=""):
        if (self.kind == "video") != (self.data.source == "waves"):
            raise ConfigError(f"{prefix}data.source: {self.data.source!r} does not fit kind {self.kind!r} "
                              "(videos use 'waves', images a texture)")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


def load_experiment(path=None, overrides=None) -> PatternExperiment:
    return load_config(PatternExperiment, path, overrides)


def observed_pattern(cfg: PatternExperiment) -> torch.Tensor:
    """The training example in model units: (1, 1, H, W) or (1, 1, T, H, W) in [-1, 1]."""
    d = cfg.data
    raw = wave_field(d.frames, d.size, d.seed) if cfg.kind == "video" else load_texture(d.source, d.size)
    return raw * 2 - 1


def build_model(cfg: PatternExperiment):
    net = GenerativeConvNet if cfg.kind == "image" else SpatialTemporalConvNet
    return net(1, cfg.net.widths, cfg.net.kernels, cfg.net.strides, cfg.net.sigma_ref)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def save_pattern(x: torch.Tensor, path: Path) -> Path:
    """Write model-unit images as a PNG grid, videos as a GIF plus a PNG of their frames."""
    if x.dim() == 4:
        return save_grid(to_unit(x), path.with_suffix(".png"))
    save_grid(to_unit(x[:, :, :: max(1, x.shape[2] // 8)]).transpose(1, 2).flatten(0, 1), path.with_suffix(".png"),
              ncols=len(range(0, x.shape[2], max(1, x.shape[2] // 8))))
    return save_gif(to_unit(x), path.with_suffix(".gif"))


def train(cfg: PatternExperiment, resume: bool = True) -> Trainer:
    """Train on the configured pattern; samples are saved every ``train.sample_every`` steps."""
    torch.manual_seed(cfg.train.seed)
    x = observed_pattern(cfg)
    data = x.expand(cfg.train.batch_size, *x.shape[1:]).contiguous()
    run_dir = cfg.run_dir

    def save_samples(trainer, step, metrics):
        if trainer.rank == 0 and (step % cfg.train.sample_every == 0 or step == cfg.train.steps):
            save_pattern(trainer.last_samples, run_dir / "samples" / f"step{step:06d}")

    trainer = Trainer(build_model(cfg), data, cfg.train, run_dir, resume=resume, callbacks=[save_samples],
                      full_config=cfg)
    save_pattern(x, run_dir / "observed")
    trainer.fit()
    return trainer


def load_trained(run_dir: str | Path) -> tuple[PatternExperiment, torch.nn.Module]:
    """The experiment config and trained model of a run folder."""
    run_dir = Path(run_dir)
    cfg = load_experiment(run_dir / "config.yaml")
    path = run_dir / "checkpoint.pt"
    model = load_weights(build_model(cfg), load_checkpoint(path)["model"], path)
    return cfg, model.eval()


def beside(left: torch.Tensor, right: torch.Tensor, pad: int = 8) -> torch.Tensor:
    """Two images (1, C, H, W) in [0, 1] side by side on white, top-aligned, at their own sizes."""
    h = max(left.shape[-2], right.shape[-2])
    canvas = torch.ones(1, left.shape[1], h, left.shape[-1] + pad + right.shape[-1])
    canvas[..., : left.shape[-2], : left.shape[-1]] = left
    canvas[..., : right.shape[-2], left.shape[-1] + pad:] = right
    return canvas


def synthesise(run_dir, n: int | None = None, steps: int | None = None, seed: int = 0,
               size: int | None = None) -> torch.Tensor:
    """Fresh samples from noise with the trained model; saved as ``synthesis.png``/``.gif``.

    The ConvNets are fully convolutional, so ``size`` may exceed the training size (a texture
    grows beyond the observed patch). Images also get ``synthesis_beside_observed.png``: the
    observed texture and the first sample side by side at the same pixel scale, enlarged 2x.
    """
    if size is not None and not 8 <= size <= 2048:
        raise ConfigError(f"--size: {size} is outside 8..2048 pixels")
    cfg, model = load_trained(run_dir)
    g = torch.Generator().manual_seed(seed)
    observed = observed_pattern(cfg)
    shape = observed.shape[1:] if size is None else (*observed.shape[1:-2], size, size)
    x0 = cfg.train.chains.std * torch.randn((n or cfg.num_samples, *shape), generator=g)
    s = cfg.train.sampler
    x = langevin(model.energy, x0, steps or s.steps, s.step_size, clamp=s.clamp, generator=g,
                 noise=scaled_schedule(s.noise, s.noise_scale))
    save_tensors({"samples": x}, Path(run_dir) / "synthesis.pt")
    save_pattern(x, Path(run_dir) / "synthesis")
    if cfg.kind == "image":  # shown at twice the pixel size, both at the same scale
        pair = torch.nn.functional.interpolate(beside(to_unit(observed), to_unit(x[:1])), scale_factor=2)
        save_grid(pair, Path(run_dir) / "synthesis_beside_observed.png")
    return x


def recovery_mask(shape, kind: str) -> torch.Tensor:
    """True where observed. ``center``: a centred square (image) / box (video) of half the
    size is hidden; ``frames``: (videos) every other block of 2 frames is hidden."""
    mask = torch.ones(shape, dtype=torch.bool)
    h, w = shape[-2:]
    if kind == "center":
        mask[..., h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2] = False
    elif kind == "frames":
        if len(shape) != 5:
            raise ValueError("frame masks need videos (B, C, T, H, W)")
        for t in range(shape[2]):
            if (t // 2) % 2 == 1:
                mask[:, :, t] = False
    else:
        raise ValueError(f"unknown mask {kind!r}; use center or frames")
    return mask


def recover(run_dir, mask_kind: str = "center", steps: int | None = None, seed: int = 0) -> dict:
    """Recover the hidden part of the training pattern by masked Langevin.

    Returns the mean absolute error (in [0, 1] pixel units) on the hidden entries for
    the EBM and for the mean-fill baseline (hidden entries set to the visible mean),
    and writes ``recovery_<mask>.png``: observed / masked / recovered.
    """
    cfg, model = load_trained(run_dir)
    truth = observed_pattern(cfg)
    mask = recovery_mask(truth.shape, mask_kind)
    masked = torch.where(mask, truth, truth[mask].mean())
    s = cfg.train.sampler
    g = torch.Generator().manual_seed(seed)
    x = langevin(model.energy, masked, steps or s.steps, s.step_size, mask=mask, observed=truth,
                 clamp=s.clamp, noise=scaled_schedule(s.noise, s.noise_scale), generator=g)
    hidden = ~mask
    err = ((to_unit(x) - to_unit(truth)).abs()[hidden]).mean().item()
    base = ((to_unit(masked) - to_unit(truth)).abs()[hidden]).mean().item()
    save_pattern(torch.cat([truth, masked, x]), Path(run_dir) / f"recovery_{mask_kind}")
    return {"mask": mask_kind, "ebm_error": err, "mean_fill_error": base}
