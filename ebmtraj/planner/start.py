"""Where the search starts: the nominal, or the closed-form reference start.

The reference start is the training code's prediction start (``ebmtraj.ioc.reference_start``,
rebuilt here because ``ebmtraj.ioc`` imports the training loop): around the nominal, the
rolled-out positions are linear in z -- the longitudinal offset in the acceleration channel,
the lateral one in the steering channel in proportion to speed -- so the controls that best
follow the neural term's references (weighted by its precisions, with the reference prior)
solve a T x T linear system per channel. The Jacobians of a straight drive at ``v_ref`` are
computed once per model.
"""
from __future__ import annotations

import torch

from ..cost import IOCEnergy


class ReferenceStart:
    """``start(cond, enc) -> z (B, T, 2)`` for one model (Jacobians cached at construction)."""

    def __init__(self, model: IOCEnergy, v_ref: float = 20.0):
        self.model, self.v_ref = model, v_ref
        T = model.cost.steps
        x_ref = torch.zeros(1, 6, dtype=torch.float64)
        x_ref[0, 2] = v_ref

        def pos(z):
            return model.rollout(z.view(1, T, 2), {"x0": x_ref})[0][0, :, :2]

        dtype = next(model.buffers()).dtype
        model.double()
        try:
            J = torch.autograd.functional.jacobian(pos, torch.zeros(1, T, 2, dtype=torch.float64))
        finally:
            model.to(dtype)
        J = J.view(T, 2, T, 2)
        self.jac = (J[:, 0, :, 0].clone(), J[:, 1, :, 1].clone())        # (T, T) per channel

    @torch.no_grad()
    def __call__(self, cond: dict, enc) -> torch.Tensor:
        """cond: the cost's inputs (B rows); enc: the neural term's (reference (B,T,2),
        log-scale (B or 1,T,2)) for them."""
        ref, log_sigma = enc
        B, T = ref.shape[0], ref.shape[1]
        prec = torch.exp(-2 * log_sigma.double()).expand(B, T, 2)
        sigma = self.model.sigma_ref
        lam = 0.0 if sigma is None else 1.0 / sigma ** 2
        eye = torch.eye(T, dtype=torch.float64)
        scale = cond["x0"][:, 2].double().clamp_min(2.0) / self.v_ref
        z = []
        for c, jac in enumerate(self.jac):
            Jb = jac[None] * (scale[:, None, None] if c == 1 else 1.0)
            JtW = Jb.transpose(1, 2) * prec[:, None, :, c]
            A = JtW @ Jb + (lam + 1e-6) * eye
            b = JtW @ ref[..., c].double()[..., None]
            z.append(torch.linalg.solve(A, b)[..., 0])
        return torch.stack(z, -1).to(cond["x0"].dtype)
