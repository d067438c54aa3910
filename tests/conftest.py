import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
# CI stays reproducible (derandomized, a fixed seed); `make bench` explores new examples with this one
settings.register_profile(
    "explore", max_examples=2000, deadline=None, derandomize=False, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one thread each, or OpenMP threads spin against each other
    import torch

    torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def quick_bnn(tmp_path_factory):
    """The digits BNN after one epoch on 300 images, exported: a small model for board tests (read only)."""
    from fxp.cli import main

    root = tmp_path_factory.mktemp("quick_bnn")
    assert main(["train", "--model", "bnn_digits", "--epochs", "1", "--limit-train", "300", "--quiet",
                 "--out", str(root / "run")]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "m.fxpm")]) == 0
    return root / "m.fxpm"
