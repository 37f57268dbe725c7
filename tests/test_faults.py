"""Faults from outside: a full disk while saving, untrusted weight files, and a dataset with
corrupt records (see also scripts/fault_injection.py for the same on the full synthetic dataset)."""
import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import tiny_recipe
from gemfactory.errors import CheckpointError

def _raise_enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- disk full while save_checkpoint replaces an existing checkpoint --------------------------
@pytest.fixture
def saved(tiny_built, tmp_path):
    from gemfactory.model.checkpoint import save_checkpoint

    recipe, tok, model, _ = tiny_built
    out = save_checkpoint(model, tok, tmp_path / "model", recipe.to_dict())
    return out, {p.name: p.read_bytes() for p in out.iterdir()}


def _fail_second_replace(monkeypatch):
    """os.replace works once (the old folder moves aside), then the disk is full."""
    from gemfactory.model import checkpoint

    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            _raise_enospc()
        return real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)


@pytest.mark.parametrize("where", ["safetensors-write", "fsync", "rename"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tiny_built, saved, monkeypatch, where):
    from gemfactory.infer.load import load_pretrained_model
    from gemfactory.model import checkpoint

    recipe, tok, model, _ = tiny_built
    out, before = saved
    if where == "safetensors-write":
        monkeypatch.setattr("transformers.modeling_utils.safe_save_file", _raise_enospc)
    elif where == "fsync":
        monkeypatch.setattr(checkpoint.os, "fsync", _raise_enospc)
    else:
        _fail_second_replace(monkeypatch)
    with pytest.raises(CheckpointError) as exc:
        checkpoint.save_checkpoint(model, tok, out, recipe.to_dict())
    assert str(exc.value) == f"could not save checkpoint to {out}: No space left on device"
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the previous checkpoint, byte for byte
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]  # no .model.tmp-* / .model.old-* left
    assert load_pretrained_model(out).path == str(out)


# -- disk full during a mid-stage trainer checkpoint -------------------------------------------
class _FakeHFTrainer:
    """What AtomicCheckpoints relies on from transformers.Trainer: checkpoint-N under _get_output_dir."""

    fail_after_bytes = None

    def _get_output_dir(self, trial):
        return self.args.output_dir

    def _save_checkpoint(self, model, trial):
        out = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"w" * 64)
        if self.fail_after_bytes is not None:
            _raise_enospc()
        (out / "trainer_state.json").write_bytes(json.dumps({"global_step": self.state.global_step}).encode())


def _trainer(stage_dir: Path):
    from gemfactory.train.resume import AtomicCheckpoints

    class Trainer(AtomicCheckpoints, _FakeHFTrainer):
        pass

    t = Trainer()
    t.args = SimpleNamespace(output_dir=str(stage_dir), should_save=True, save_total_limit=2, world_size=1,
                             per_device_train_batch_size=1, gradient_accumulation_steps=1)
    t.accelerator = SimpleNamespace(wait_for_everyone=lambda: None)
    t.state = SimpleNamespace(global_step=0)
    return t


@pytest.mark.parametrize("where", ["writing", "publishing", "pointer"])
def test_disk_full_during_trainer_checkpoint_keeps_previous_one_and_pointer(tmp_path, monkeypatch, where):
    from gemfactory.model import checkpoint
    from gemfactory.train import resume

    stage = tmp_path / "fine"
    trainer = _trainer(stage)
    trainer.state.global_step = 4
    trainer._save_checkpoint(None, None)
    assert resume.resume_point(stage) == stage / "checkpoint-4"
    previous = {p.name: p.read_bytes() for p in (stage / "checkpoint-4").iterdir()}

    trainer.state.global_step = 8
    if where == "writing":
        trainer.fail_after_bytes = 64
    elif where == "publishing":
        monkeypatch.setattr(resume, "publish", _raise_enospc)
    else:  # checkpoint-8 went live, then the pointer file cannot be written (point_latest's write_text)
        monkeypatch.setattr(checkpoint.Path, "write_text", _raise_enospc)
    with pytest.raises(CheckpointError) as exc:
        trainer._save_checkpoint(None, None)
    monkeypatch.undo()
    assert str(exc.value) == (f"could not save checkpoint {stage / 'checkpoint-8'}: No space left on device; "
                              "the previous checkpoint and latest-checkpoint are kept")
    assert (stage / "latest-checkpoint").read_text().strip() == "checkpoint-4"
    assert {p.name: p.read_bytes() for p in (stage / "checkpoint-4").iterdir()} == previous
    assert resume.resume_point(stage) == stage / "checkpoint-4"
    assert not (stage / ".saving").exists()


# -- untrusted files ----------------------------------------------------------------------------
class Payload:
    """Unpickling this would run code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_weight_file_with_pickled_objects_is_refused(tmp_path):
    from gemfactory.weights import load_state_file

    marker = tmp_path / "code-ran"
    path = tmp_path / "ecg_encoder.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_state_file(str(path), key="model.ecg.path")
    message = str(exc.value)
    assert message.startswith(f"model.ecg.path: cannot read weights from {path}: UnpicklingError:")
    assert "Weights only load failed" in message
    assert not marker.exists()
    # plain tensors in the same format load
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    assert torch.equal(load_state_file(str(path))["w"], torch.ones(2))


def test_no_remote_code_and_no_unsafe_unpickling_in_the_package():
    package = Path(__file__).resolve().parents[1] / "gemfactory"
    found = []
    for path in sorted(package.rglob("*.py")):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"trust_remote_code\W*[=:]\s*True", code):
                found.append(f"{path.relative_to(package)}:{no}: {line.strip()}")
            if re.search(r"\b(torch\.load|pickle\.loads?)\(", code) and "weights_only=True" not in code:
                found.append(f"{path.relative_to(package)}:{no}: {line.strip()}")
    assert found == []


# -- a dataset with corrupt records ---------------------------------------------------------------
@pytest.fixture(scope="module")
def corrupt_data(tiny_data, tmp_path_factory):
    """tiny_data with 3 of its train records broken: 2 truncated .dat, 1 .hea deleted (~6% of the items)."""
    data = tmp_path_factory.mktemp("corrupt") / "data"
    shutil.copytree(tiny_data, data)
    items = json.loads((data / "train.json").read_text())
    records = sorted({i["ecg"] for i in items if i.get("ecg")})[::12][:3]
    for name in records[:2]:
        dat = data / "ecg" / f"{name}.dat"
        dat.write_bytes(dat.read_bytes()[:333])
    (data / "ecg" / f"{records[2]}.hea").unlink()
    bad_ids = sorted(i["id"] for i in items if i.get("ecg") in records)
    return data, bad_ids, len(items)


def _train(data: Path, out: Path, caplog, **data_options) -> int:
    from gemfactory.cli import main

    recipe = tiny_recipe(data, out)
    recipe["data"].update(data_options)
    recipe["training"]["report_to"] = []
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with caplog.at_level(logging.WARNING):
        return main(["-q", "train", str(path), "stages.finetune.batch_size=9"])


def test_training_skips_exactly_the_corrupt_records(corrupt_data, tmp_path, caplog, capsys):
    data, bad_ids, n = corrupt_data
    assert 0.04 <= len(bad_ids) / n <= 0.1
    assert _train(data, tmp_path / "run", caplog, max_bad_fraction=0.1) == 0
    summary = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() and "stage" in r.getMessage()]
    assert summary == [f"stage finetune skipped {len(bad_ids)} sample(s): {', '.join(bad_ids)}"]
    warned = {m.group(1) for r in caplog.records if (m := re.match(r"skipping sample (\S+): ", r.getMessage()))}
    assert sorted(warned) == bad_ids
    assert (tmp_path / "run" / "finetune" / "model" / "config.json").is_file()


def test_training_stops_when_more_than_max_bad_fraction_is_corrupt(corrupt_data, tmp_path, caplog, capsys):
    data, bad_ids, n = corrupt_data
    assert _train(data, tmp_path / "run", caplog, max_bad_fraction=0.01) == 2
    err = capsys.readouterr().err
    line = err[err.rindex("error: "):].strip()  # the progress bar's last frame may share its line
    assert "\n" not in line and "Traceback" not in err
    assert re.fullmatch(rf"error: (\d+) of {n} samples \(\d+\.\d%\) were unusable, over "
                        rf"data\.max_bad_fraction=0\.01; first: (\S+): sample \S+: ECG record .+", line), line
    first = re.search(r"first: (\S+):", line).group(1)
    assert first in bad_ids
    assert not (tmp_path / "run" / "finetune" / "model").exists()
