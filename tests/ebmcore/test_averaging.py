"""The parameter average (``train.average``): its arithmetic, its place in the Trainer's
checkpoint (exact resume) and the model evaluation loads from a run."""
import pytest
import torch

from ebmcore.averaging import ParameterAverage, evaluated_state
from ebmcore.io import load_tensors

from .toy import MLPEnergy, make_trainer, toy_config


def _flat(state):
    return torch.cat([v.flatten() for k, v in sorted(state.items())])


def test_average_follows_the_updates_and_swaps_back():
    model = MLPEnergy(4)
    avg = ParameterAverage(model, 0.5)
    weight = model.net[0].weight
    start = weight.detach().clone()
    with torch.no_grad():
        weight.add_(1.0)
    avg.update()                                        # 0.5 * start + 0.5 * (start + 1)
    with torch.no_grad():
        weight.add_(1.0)
    avg.update()                                        # 0.5 * (start + 0.5) + 0.5 * (start + 2)
    assert torch.allclose(avg.avg["net.0.weight"], start + 1.25)
    with avg.swapped_in():
        assert torch.allclose(weight, start + 1.25)
    assert torch.allclose(weight, start + 2.0)          # training goes on from its own state
    with pytest.raises(ValueError):
        ParameterAverage(model, 1.0)


def test_trainer_keeps_the_average_in_its_checkpoint_and_resumes_it_exactly(tmp_path):
    straight = make_trainer(tmp_path / "a", toy_config(steps=12, average=0.8))
    straight.fit()
    first = make_trainer(tmp_path / "b", toy_config(steps=5, ckpt_every=5, average=0.8))
    first.fit()
    resumed = make_trainer(tmp_path / "b", toy_config(steps=12, average=0.8))
    resumed.fit()
    saved = load_tensors(tmp_path / "b" / "checkpoint.pt")
    assert torch.equal(_flat(saved["average"]), _flat(straight.average.state_dict()))
    assert not torch.allclose(_flat(saved["average"]), _flat(saved["model"]))
    # evaluation loads the average; training state stays the current model's
    assert torch.equal(_flat(evaluated_state(saved)), _flat(saved["average"]))
    with resumed.evaluated() as model:
        assert torch.equal(_flat(model.state_dict()), _flat(saved["average"]))
    assert torch.equal(_flat(resumed.model.state_dict()), _flat(saved["model"]))


def test_without_average_evaluation_is_the_current_model(tmp_path):
    trainer = make_trainer(tmp_path, toy_config(steps=3))
    trainer.fit()
    saved = load_tensors(tmp_path / "checkpoint.pt")
    assert "average" not in saved and trainer.average is None
    assert torch.equal(_flat(evaluated_state(saved)), _flat(saved["model"]))
    with trainer.evaluated() as model:
        assert model is trainer.model
