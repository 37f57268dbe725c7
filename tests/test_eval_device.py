"""``gemfactory eval --device/--dtype``: the checkpoint loads where asked, every batch follows the
model's device and dtype, and bad values are the one line ``chat`` gives for them."""
import pytest
import torch

from gemfactory.cli import main
from gemfactory.model.checkpoint import save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tiny_built, tmp_path_factory):
    _, tok, model, _ = tiny_built
    run = tmp_path_factory.mktemp("evaldevice") / "tiny-run"
    save_checkpoint(model, tok, run / "finetune" / "model", recipe={"name": "tiny", "model": {"llm": {"name": "vicuna"}}})
    (run / "latest").write_text("finetune/model\n")
    return run


@pytest.fixture
def seen_inputs(monkeypatch):
    """Loads through the real loader and records (model device, model dtype, input tensors) of every generate call."""
    from gemfactory.infer import load

    real, seen = load.load_pretrained_model, []

    def recording(*args, **kwargs):
        loaded = real(*args, **kwargs)
        model = loaded.model

        generate = model.generate

        def recording_generate(*args, **kwargs):
            tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
            seen.append((model.device, model.dtype, tensors))
            return generate(*args, **kwargs)

        model.generate = recording_generate
        return loaded

    monkeypatch.setattr(load, "load_pretrained_model", recording)
    return seen


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_eval_on_cpu_in_bfloat16_moves_every_batch_to_the_model(ckpt, tiny_data, seen_inputs, capsys):
    code = main(["-q", "eval", str(ckpt), "--task", "synthetic", "--data", str(tiny_data / "test.json"),
                 "--limit", "3", "--batch-size", "2", "--device", "cpu", "--dtype", "bfloat16"])
    assert code == 0 and "synthetic: accuracy" in capsys.readouterr().out
    assert seen_inputs, "the model never ran"
    kinds = set()
    for device, dtype, tensors in seen_inputs:
        assert dtype == torch.bfloat16
        for name, t in tensors.items():
            assert t.device == device, name
            if t.is_floating_point():  # pixels and ECG signals follow the model's dtype
                assert t.dtype == torch.bfloat16, name
                kinds.add(name)
    assert kinds & {"pixel_values", "ecg", "ecgs", "signals"}, f"no image/ECG input seen: {kinds}"


@pytest.mark.parametrize("flags", [["--device", "cuda"], ["--device", "gpu0"], ["--dtype", "float8"],
                                   ["--load-4bit", "--load-8bit"]])
def test_bad_device_flags_give_the_line_chat_gives(ckpt, tiny_data, capsys, monkeypatch, flags):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine as one without CUDA
    assert main(["-q", "chat", str(ckpt), *flags, "hi"]) == 2
    chat_line = one_error_line(capsys)
    assert main(["-q", "eval", str(ckpt), "--task", "synthetic", "--data", str(tiny_data / "test.json"), *flags]) == 2
    assert one_error_line(capsys) == chat_line
    if flags == ["--device", "cuda"]:
        assert chat_line == "error: device 'cuda': no CUDA device is available on this machine"
