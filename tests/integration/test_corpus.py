"""The known-bug corpus runner end to end on the stock Debian kernel (CI cannot
build kernels): one entry's workload must pass there, and an entry whose bug
Debian's 6.12.117 still has (generic/779: a renamed symlink keeps its old name
after the directory's fsync) must be caught on real guests."""

import json
from pathlib import Path

from harness.corpus.run import CorpusOptions, run_corpus
from harness.images.guest import GuestImages


def test_corpus_runner_on_the_stock_kernel(
    images: GuestImages, tmp_path: Path, no_leftovers: None
) -> None:
    out = tmp_path / "results"
    run = run_corpus(
        CorpusOptions(
            kernel=images.kernel.info["source"],
            only="btrfs-782,btrfs-779",
            runs=1,
            states=30,
            cuts=0,
            out=out,
        )
    )
    assert (out / "corpus" / "latest").resolve() == run.resolve()
    doc = json.loads((run / "corpus.json").read_text())
    assert doc["complete"]
    entries = {e["id"]: e for e in doc["entries"]}
    clean, present = entries["btrfs-782"], entries["btrfs-779"]
    assert clean["result"] == "clean in 1 runs on the given kernel" and clean["as_expected"]
    assert clean["runs"]["stock"][0]["verdict"] == "clean"
    assert present["as_expected"], present["result"]
    caught = present["runs"]["stock"][0]
    assert caught["verdict"] == "caught"
    v = caught["violations"][0]
    assert v["signature"] == "promise.file | fs-durability | filesystem | file disk:/kb/dir"
    assert "it holds old-slink" in v["evidence"]["output"]  # the old name came back
    assert (run / caught["run_dir"] / v["bundle"]).is_dir()  # its reproducer
    page = (run / "report.html").read_text()
    assert "Known-bug corpus" in page and "btrfs-779" in page
    assert "it holds old-slink" in (run / "corpus.html").read_text()
    assert not list(run.rglob("disk.img"))
