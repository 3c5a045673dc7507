"""`ravlm-bench data demo` and `ravlm-bench data check`."""

from __future__ import annotations

import json

import pytest

from ravlm_bench.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "demo"
    assert main(["data", "demo", "--out", str(root), "--size", "tiny", "--seed", "5"]) == 0
    return root


@pytest.mark.parametrize("tree", ["coco", "flickr30k", "visual_genome"])
def test_demo_then_check_matches_what_was_written(capsys, cli_world, tree):
    written = json.loads((cli_world / "demo_world.json").read_text())["trees"][tree]
    code, out, _ = run(capsys, "data", "check", str(cli_world / tree), "--format", tree,
                       "--json")
    assert code == 0
    report = json.loads(out)
    assert report["problems"] == []
    for kind, counts in report["counts"].items():
        assert sum(counts.values()) == written[kind], kind
    assert report["categories"] == written["categories"]
    if tree != "visual_genome":  # VG's split is made by the loader, not written
        assert report["counts"]["images"] == written["splits"]


def test_check_prints_a_summary_table(capsys, cli_world):
    code, out, _ = run(capsys, "data", "check", str(cli_world / "coco"), "--format", "coco")
    assert code == 0
    assert "coco at " in out and "4 splits, 10 categories" in out
    header = next(line for line in out.splitlines() if line.startswith("split"))
    assert header.split() == ["split", "images", "captions", "instances"]
    total = next(line for line in out.splitlines() if line.startswith("total"))
    written = json.loads((cli_world / "demo_world.json").read_text())["trees"]["coco"]
    assert total.split()[1:] == [str(written["images"]), str(written["captions"]),
                                 str(written["instances"])]
    assert "no problems found" in out


def test_demo_prints_counts(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "demo", "--out", str(tmp_path / "d"), "--size", "tiny")
    assert code == 0 and "demo world (seed 0, size tiny)" in out and "visual_genome" in out


def test_unusable_tree_exits_2_with_the_reason(capsys, tmp_path, cli_world):
    code, _, err = run(capsys, "data", "check", str(tmp_path), "--format", "coco")
    assert code == 2 and "no COCO annotation files" in err
    code, _, err = run(capsys, "data", "check", str(tmp_path / "nope"), "--format", "flickr30k")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "data", "check", str(cli_world / "coco"), "--format", "cocoo")
    assert code == 2 and "did you mean 'coco'" in err


def test_bad_images_fail_or_are_skipped_and_listed(capsys, tmp_path, cli_world):
    import shutil

    root = tmp_path / "flickr30k"
    shutil.copytree(cli_world / "flickr30k", root)
    victim = sorted((root / "flickr30k-images").glob("*.jpg"))[0]
    victim.write_bytes(b"")
    code, _, err = run(capsys, "data", "check", str(root), "--format", "flickr30k")
    assert code == 2
    assert f"1 image files are missing or corrupt: flickr30k-images/{victim.name} (corrupt" in err
    code, out, _ = run(capsys, "data", "check", str(root), "--format", "flickr30k",
                       "--on-bad-image", "skip")
    assert code == 2  # skipped, listed, and still not a clean tree
    assert "1 problems found" in out and f"flickr30k-images/{victim.name}" in out


def test_cli_size_choices_match_the_generator():
    from ravlm_bench.cli.data_cmd import DEMO_SIZES
    from ravlm_bench.demo import SIZES

    assert list(DEMO_SIZES) == list(SIZES)


def half_a_jpeg(path) -> None:
    """Replace an image with a valid JPEG cut in half: the header is intact, the pixels not."""
    import io

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) // 2])


@pytest.fixture
def truncated_coco(demo_copy):
    root = demo_copy("coco")
    victim = sorted((root / "val2017").glob("*.jpg"))[1]
    half_a_jpeg(victim)
    return root, f"val2017/{victim.name}"


def test_check_decodes_pixels_and_fails_on_a_truncated_jpeg(capsys, truncated_coco):
    root, victim = truncated_coco
    code, out, err = run(capsys, "data", "check", str(root), "--format", "coco")
    assert code == 2
    named = [line for line in out.splitlines() if victim in line]
    assert len(named) == 1
    assert named[0].startswith(f"  - {victim}: cannot decode (OSError: image file is truncated")
    assert "1 image files cannot be decoded:" in out and "no problems found" not in out
    assert "decoded 60 images in " in out
    assert err.startswith("error: coco (") and "1 image files cannot be decoded" in err
    assert len(err.strip().splitlines()) == 1


def test_fast_check_reads_headers_only_and_says_so(capsys, truncated_coco):
    root, victim = truncated_coco
    code, out, _ = run(capsys, "data", "check", str(root), "--format", "coco", "--fast")
    assert code == 0
    assert victim not in out and "no problems found" in out
    assert "--fast: headers only; truncated or corrupt pixel data is not detected" in out
    code, out, _ = run(capsys, "data", "check", str(root), "--format", "coco",
                       "--no-image-check")
    assert code == 0 and "--no-image-check: image files were not opened" in out


def test_skipping_bad_images_lists_the_truncated_one_and_exits_2(capsys, truncated_coco):
    root, victim = truncated_coco
    code, out, err = run(capsys, "data", "check", str(root), "--format", "coco",
                         "--on-bad-image", "skip")
    assert code == 2 and "1 image files are missing, corrupt, too large or cannot be " \
        "decoded (listed above)" in err
    assert [line for line in out.splitlines() if victim in line][0].startswith(
        f"  - {victim}: cannot decode (OSError: image file is truncated")


def test_json_check_lists_undecodable_images(capsys, truncated_coco):
    root, victim = truncated_coco
    code, out, err = run(capsys, "data", "check", str(root), "--format", "coco", "--json")
    assert code == 2 and "cannot be decoded" in err
    report = json.loads(out)
    assert report["image_check"] == "pixels"
    assert [entry["path"] for entry in report["undecodable_images"]] == [victim]
    assert report["undecodable_images"][0]["error"].startswith("cannot decode (OSError")
