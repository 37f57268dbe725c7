"""distributed_run leaves the process group on success and on failure (a second of gloo, one process).
The multi-process exits themselves are tested in test_distributed.py (stress), test_multinode.py,
test_resume_scale.py, test_eval_shard.py and test_loading_counts.py: each asserts exit status 0."""
import pytest
import torch.distributed as dist

from gemfactory.train import distributed


@pytest.fixture(autouse=True)
def no_group_left_by_earlier_tests():
    """In-process trainings of earlier tests (DeepSpeed through the Python API) may leave their
    one-rank group; these tests start without one."""
    if dist.is_initialized():
        dist.destroy_process_group()
    yield


@pytest.fixture()
def one_rank_env(monkeypatch):
    from gemfactory.train.trainer import _free_port

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")


def test_the_group_is_destroyed_after_success_and_after_an_error(one_rank_env):
    dist.init_process_group("gloo")
    with distributed.distributed_run():
        assert distributed.all_gather({"a": 1}) == [{"a": 1}]
    assert not dist.is_initialized()

    dist.init_process_group("gloo")
    with pytest.raises(ValueError, match="boom"), distributed.distributed_run():
        raise ValueError("boom")
    assert not dist.is_initialized()


def test_without_a_launcher_nothing_is_joined(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.distributed_run(join=True):
        assert not dist.is_initialized() and distributed.shard() == (0, 1)
