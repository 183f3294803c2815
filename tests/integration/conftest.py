from pathlib import Path

import pytest

from harness.images.guest import GuestImages, ensure_images


@pytest.fixture(scope="session")
def images() -> GuestImages:
    """The default guest images, built on first use (cached by recipe hash)."""
    return ensure_images()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The hook sees every collected test, not only this directory's.
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.vm)
