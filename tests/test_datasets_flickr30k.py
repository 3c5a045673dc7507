"""The flickr30k dataset plugin: Karpathy splits, and the original token file without them."""

from __future__ import annotations

from pathlib import Path

from testhelpers import demo_tree

from ravlm_bench.plugin_host.contracts import Dataset


def test_karpathy_splits_match_what_the_demo_wrote(registry, demo_world):
    flickr = registry.create("datasets", "flickr30k", root=demo_world / "flickr30k")
    assert isinstance(flickr, Dataset)
    expected = demo_tree(demo_world, "flickr30k")
    assert flickr.splits() == ["train", "val", "test"]
    assert flickr.kinds == ("images", "captions")
    counts = flickr.summary()["counts"]
    assert counts["images"] == expected["splits"]
    assert sum(counts["captions"].values()) == expected["captions"]
    assert flickr.problems == [] and flickr.notes == []


def test_image_ids_are_the_numeric_file_names(registry, demo_world):
    flickr = registry.create("datasets", "flickr30k", root=demo_world / "flickr30k")
    images = flickr.table("images", "test")
    for image_id, path, flickr_id in zip(images["image_id"], images["image_path"],
                                         images["flickr_id"], strict=True):
        assert Path(path).name == f"{image_id}.jpg" and Path(path).is_file()
        assert flickr_id == image_id
    # sizes are not in the Karpathy file: they come from the image headers
    assert set(images["width"]) == {128}
    captions = flickr.table("captions", "test")
    assert len(captions) == 5 * len(images)
    assert set(captions["image_id"]) == set(images["image_id"])


def test_token_file_without_karpathy_gives_one_split_and_says_so(registry, demo_copy):
    root = demo_copy("flickr30k")
    (root / "dataset_flickr30k.json").unlink()
    flickr = registry.create("datasets", "flickr30k", root=root)
    assert flickr.splits() == ["all"]
    assert any("one split 'all'" in note and "results_20130124.token" in note
               for note in flickr.notes)
    lines = (root / "results_20130124.token").read_text().splitlines()
    assert flickr.summary()["counts"]["captions"] == {"all": len(lines)}
    assert flickr.summary()["counts"]["images"] == {"all": len(lines) // 5}
    first_name, first_caption = lines[0].split("\t")
    row = flickr.table("captions", "all")[0]
    assert row["caption"] == first_caption.strip()
    assert row["image_id"] == int(first_name.split(".")[0])


def test_malformed_token_lines_are_skipped_and_counted(registry, demo_copy):
    root = demo_copy("flickr30k")
    (root / "dataset_flickr30k.json").unlink()
    token = root / "results_20130124.token"
    lines = token.read_text().splitlines()
    lines.insert(3, "no tab on this line")
    lines.insert(7, "../../escape.jpg#0\tA caption.")
    token.write_text("\n".join(lines) + "\n")
    flickr = registry.create("datasets", "flickr30k", root=root)
    assert flickr.problems == ["results_20130124.token: 2 lines are not "
                               "'NAME.jpg#N<TAB>caption' (skipped), first at line 4"]
    assert sum(flickr.summary()["counts"]["captions"].values()) == len(lines) - 2


def test_results_csv_is_read_with_its_missing_pipe_row(registry, demo_copy):
    """The widely shared ``results.csv``: a header, ``NAME.jpg| N| caption`` rows, and in
    the common copy one row without its second pipe."""
    root = demo_copy("flickr30k")
    (root / "dataset_flickr30k.json").unlink()
    token = root / "results_20130124.token"
    rows = []
    for line in token.read_text().splitlines():
        key, caption = line.split("\t")
        name, number = key.split("#")
        rows.append(f"{name}| {number}| {caption}")
    name, number, caption = rows[4].split("| ")
    rows[4] = f"{name}| {number}   {caption}"  # the row without its second pipe
    rows.insert(9, "not a caption row")
    (root / "results.csv").write_text("image_name| comment_number| comment\n"
                                      + "\n".join(rows) + "\n")
    token.unlink()
    flickr = registry.create("datasets", "flickr30k", root=root)
    assert flickr.splits() == ["all"]
    assert flickr.problems == ["results.csv: 1 line is not 'NAME.jpg| N| caption' "
                               "(skipped), first at line 11"]
    captions = flickr.table("captions", "all")
    assert len(captions) == len(rows) - 1
    assert captions[4]["caption"] == caption.strip()
    assert captions[4]["image_id"] == int(name.split(".")[0])
    assert any("results.csv are in one split 'all'" in note for note in flickr.notes)
