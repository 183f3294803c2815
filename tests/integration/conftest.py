import pytest

from harness.images import GuestImages, ensure_images


@pytest.fixture(scope="session")
def images() -> GuestImages:
    """The default guest images, built on first use (cached by recipe hash)."""
    return ensure_images()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.vm)
