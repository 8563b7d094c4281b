"""``derf-zoo models`` (the generated model table) and the command line's own documentation."""

from __future__ import annotations

import argparse

import pytest
import torch

from derf_zoo.cli import LIGHTNING_COMMANDS, _own_parser, main
from derf_zoo.hub import released_weights
from derf_zoo.models import _table as table
from derf_zoo.models import create_model, list_families, list_models


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_help_lists_lightning_and_own_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    listed = out.split("positional arguments:")[1].split("options:")[0]
    for name in (*LIGHTNING_COMMANDS, *_subparsers(_own_parser())):
        assert f"\n    {name} " in listed or f"\n    {name}\n" in listed, f"`derf-zoo --help` does not list {name}"
    assert out.rstrip().splitlines()[-1].strip().startswith("derf-zoo ")  # ends with an example


@pytest.mark.parametrize("name", sorted(set(_subparsers(_own_parser())) - set(LIGHTNING_COMMANDS)))
def test_every_command_help_ends_with_an_example(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert "examples:" in lines, f"`derf-zoo {name} --help` has no examples"
    assert lines[-1].strip().startswith(f"derf-zoo {name}"), lines[-1]


@pytest.mark.slow
def test_lightning_help_ends_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--help"])
    assert exit_.value.code == 0
    tail = " ".join(capsys.readouterr().out.split()[-12:])
    assert "example: derf-zoo fit -c recipes/vit/vit_nano_derf_digits.yaml" in tail


@pytest.mark.parametrize("name", ["vit_nano_derf", "dit_nano_ln", "wav2vec2_tiny_derf", "hyenadna_nano_derf",
                                  "caduceus_nano_rmsnorm"])  # fmt: skip
def test_parameter_count_without_allocating_equals_a_real_build(name):
    # The table counts on meta tensors (a DiT-XL costs nothing); it must count what a real build has.
    params, _ = table._describe(name)
    assert params == sum(p.numel() for p in create_model(name).parameters())


def test_describing_a_model_leaves_the_random_stream_alone():
    table._describe.cache_clear()
    torch.manual_seed(0)
    table._describe("vit_nano_ln")
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


@pytest.mark.slow
def test_rows_cover_the_registry_and_the_manifest():
    rows = table.model_rows()
    assert [r.name for r in sorted(rows, key=lambda r: r.name)] == list_models()
    assert {r.family for r in rows} == set(list_families())
    released = {w.name: w for w in released_weights()}
    shown = {w.name: w for r in rows for w in r.weights}
    assert set(shown) == {n for n in released if n.partition(".")[0] in list_models()}
    by_name = {r.name: r for r in rows}
    assert by_name["vit_base_derf"].params == 86_567_706  # timm's ViT-B/16 plus Derf's alpha and shift per site
    assert by_name["vit_base_derf"].default_input == "3x224x224"
    assert by_name["wav2vec2_tiny_derf"].default_input == "16000 samples @ 16 kHz"
    assert by_name["dit_xl_2_derf"].default_input == "4x32x32 latent"
    assert by_name["vit_nano_derf"].recipe == "recipes/vit/vit_nano_derf_digits.yaml"
    assert by_name["wav2vec2_tiny_derf"].recipe == released["wav2vec2_tiny_derf.speech"].recipe  # from the manifest
    assert dict(shown["vit_nano_derf.digits"].metrics)["acc1"] == pytest.approx(99.164, abs=1e-3)  # the card's value


def test_markdown_table_states_tag_metrics_sha_and_card():
    text = table.markdown_tables(table.model_rows(family="dit"), cards="../cards")
    weights = next(w for w in released_weights() if w.name == "dit_nano_derf.digits")
    row = next(line for line in text.splitlines() if line.startswith("| `dit_nano_derf` |"))
    assert "[`.digits`](../cards/dit_nano_derf.digits.md)" in row and f"`{weights.sha256[:12]}`" in row
    assert "loss 0.1022, fd 7.243, class_acc 71" in row
    assert "| `dit_xl_2_derf` | 674.8 M | 4x32x32 latent | `dit/dit_xl_2_derf_in1k256.yaml` | — |" in text
    hub_row = next(line for line in table.markdown_tables(table.model_rows("vit_base_ln")).splitlines()
                   if line.startswith("| `vit_base_ln`"))  # fmt: skip
    assert "https://huggingface.co/timm/vit_base_patch16_224.augreg2_in21k_ft_in1k" in hub_row
    assert "not pinned" in hub_row


def test_unknown_family_names_the_choices():
    with pytest.raises(ValueError, match="vit"):
        table.model_rows(family="vti")


def test_update_and_check_generated_regions(tmp_path, capsys):
    page = tmp_path / "page.md"
    page.write_text("# x\n\n<!-- derf-zoo models --markdown --family vit --pretrained -->\nstale\n"
                    "<!-- /derf-zoo models -->\n\nafter\n")  # fmt: skip
    assert main(["models", "--check", str(page)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["models", "--update", str(page)]) == 0
    text = page.read_text()
    assert "stale" not in text and "| `vit_nano_derf` |" in text and "| `vit_base_derf` |" not in text
    assert text.endswith("<!-- /derf-zoo models -->\n\nafter\n")
    assert main(["models", "--check", str(page)]) == 0
    page.write_text("<!-- derf-zoo models --markdown --update x -->\n<!-- /derf-zoo models -->\n")
    with pytest.raises(ValueError, match="filters only"):
        table.update_files([page])
    page.write_text("<!-- derf-zoo models --markdown -->\nno end\n")
    with pytest.raises(ValueError, match="closing"):
        table.update_files([page])


def test_models_command_prints_a_table(capsys):
    assert main(["models", "vit_nano_*", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["model", "family", "params"]
    assert "vit_nano_derf" in out and ".digits" in out and "0.203 M" in out
    assert torch.get_default_device().type == "cpu"  # the meta trick left nothing behind
