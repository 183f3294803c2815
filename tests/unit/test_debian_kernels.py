"""Which Debian packages make a kernel, on package stanzas recorded from each
suite of Debian's archive (tests/data/debian): metapackages, 7.x's split packages,
a suite without a metapackage for a flavour, pins and bad input."""

from pathlib import Path

import pytest
from debian.deb822 import Deb822

from harness.errors import InputError
from harness.images.debian import SUITES, check_suite, resolve

DATA = Path(__file__).parents[1] / "data" / "debian"


class RecordedIndex:
    def __init__(self, suite: str, drop: tuple[str, ...] = ()) -> None:
        self.suite = suite
        text = (DATA / f"{suite}.stanzas").read_text()
        self.by_name: dict[str, list[Deb822]] = {}
        for st in Deb822.iter_paragraphs(text.split("\n", 1)[1]):
            if st["Package"] not in drop:
                self.by_name.setdefault(st["Package"], []).append(st)
        self._names = [n for n in (DATA / f"{suite}.names").read_text().split() if n not in drop]

    def stanzas(self, package: str) -> list[Deb822]:
        return self.by_name.get(package, [])

    def names(self, prefix: str) -> list[str]:
        return [n for n in self._names if n.startswith(prefix)]


def test_sid_metapackage_resolves_to_72s_split_packages() -> None:
    debs = resolve(RecordedIndex("sid"), "linux-image-cloud-amd64")
    assert debs.image == "linux-image-7.2.13+deb14-cloud-amd64"
    assert debs.version == "7.2.13-1"
    assert debs.split
    assert debs.fetch == (
        "linux-binary-7.2.13+deb14-cloud-amd64",
        "linux-modules-7.2.13+deb14-cloud-amd64",
        "linux-base-7.2.13+deb14-cloud-amd64",
    )
    assert debs.pin == "sid:linux-image-7.2.13+deb14-cloud-amd64=7.2.13-1"


def test_the_standard_flavour_is_split_too() -> None:
    debs = resolve(RecordedIndex("sid"), "linux-image-amd64")
    assert debs.image == "linux-image-7.2.13+deb14-amd64" and debs.split


def test_experimental_rc_through_its_metapackage() -> None:
    debs = resolve(RecordedIndex("experimental"), "linux-image-cloud-amd64")
    assert (debs.image, debs.version) == ("linux-image-7.3-cloud-amd64", "7.3~rc7-1~exp1")
    assert debs.fetch[0] == "linux-binary-7.3-cloud-amd64"


def test_a_suite_without_the_metapackage_takes_its_highest_versioned_image() -> None:
    idx = RecordedIndex("experimental", drop=("linux-image-cloud-amd64",))
    assert resolve(idx, "linux-image-cloud-amd64").image == "linux-image-7.3-cloud-amd64"
    # many builds side by side: the highest by Debian's version order, not by name
    many = RecordedIndex("trixie-backports", drop=("linux-image-cloud-amd64",))
    assert resolve(many, "linux-image-cloud-amd64").version == "7.3.4-1~bpo13+1"


def test_backports_resolve_to_their_own_newest_build() -> None:
    debs = resolve(RecordedIndex("trixie-backports"), "linux-image-cloud-amd64")
    assert debs.version == "7.3.4-1~bpo13+1" and debs.split


def test_6x_kernels_are_one_package() -> None:
    for suite, image in (
        ("trixie", "linux-image-6.12.117+deb13-cloud-amd64"),
        ("bookworm", "linux-image-6.1.0-"),
    ):
        debs = resolve(RecordedIndex(suite), "linux-image-cloud-amd64")
        assert debs.image.startswith(image) and not debs.split
        assert debs.fetch == (debs.image,)
    old = resolve(RecordedIndex("trixie-backports"), "linux-image-6.17.13+deb13-cloud-amd64")
    assert (old.version, old.split) == ("6.17.13-1~bpo13+1", False)


def test_a_pin_is_that_build_or_says_the_archive_dropped_it() -> None:
    idx = RecordedIndex("sid")
    pinned = resolve(idx, "linux-image-7.2.13+deb14-cloud-amd64", "7.2.13-1")
    assert pinned.fetch[0] == "linux-binary-7.2.13+deb14-cloud-amd64"
    with pytest.raises(InputError, match=r"no longer has this build \(it has: 7\.2\.13-1\)") as e:
        resolve(idx, "linux-image-7.2.13+deb14-cloud-amd64", "7.2.9-1")
    assert "\n" not in str(e.value)


def test_a_package_the_suite_lacks_lists_its_kernel_packages() -> None:
    with pytest.raises(InputError) as e:
        resolve(RecordedIndex("experimental"), "linux-image-6.12.117+deb13-cloud-amd64")
    msg = str(e.value)
    assert msg.startswith(
        "KERNEL experimental:linux-image-6.12.117+deb13-cloud-amd64: "
        "Debian's experimental has no such package"
    )
    assert "linux-image-cloud-amd64" in msg and "the newest linux-image-7.3-" in msg
    assert "\n" not in msg


def test_suites_and_the_unstable_alias() -> None:
    assert check_suite("unstable") == "sid"
    assert set(SUITES) >= {"sid", "experimental", "trixie-backports", "bookworm-backports"}
    with pytest.raises(InputError, match=r"'forky'.*sid \(unstable\), experimental"):
        check_suite("forky")
