"""Text data: the embedded Tiny Shakespeare, the character tokenizer, nanoGPT's bins and the random windows."""

import hashlib
import sys

import numpy as np
import pytest
import torch

from derf_zoo.data.text import (
    ASSETS,
    CharTokenizer,
    TextDataModule,
    load_bins,
    prepare_text,
    shakespeare_text,
    shakespeare_tokenizer,
)


def test_embedded_shakespeare_is_the_char_rnn_file():
    text = shakespeare_text()
    assert len(text) == 1_115_394
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == \
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    assert (ASSETS / "README.md").read_text().count("6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e") == 1
    assert shakespeare_tokenizer().vocab_size == 65


def test_char_tokenizer_round_trip_and_errors():
    tok = CharTokenizer.from_text("hello world")
    assert tok.decode(tok.encode("lower held")) == "lower held"
    with pytest.raises(ValueError, match="Character 'z' at position 2"):
        tok.encode("hez")
    with pytest.raises(ValueError, match=r"Token id 99 is outside the vocabulary \[0, 8\)"):
        tok.decode([99])


def test_shakespeare_split_is_nanogpts_90_10():
    data = TextDataModule(embedded="shakespeare", seq_len=32, samples_per_epoch=8, max_eval_windows=None,
                          batch_size=4)
    data.setup()
    assert len(data.train_set.data) == 1_003_854 and len(data.val_set.data) == 111_540
    assert data.tokenizer.decode(data.val_set[0][:5].tolist()) == shakespeare_text()[1_003_854:1_003_859]
    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (4, 33) and batch.dtype == torch.long
    # the windows depend only on seed, epoch and position
    again = TextDataModule(embedded="shakespeare", seq_len=32, samples_per_epoch=8, batch_size=4)
    again.setup()
    assert torch.equal(next(iter(again.train_dataloader())), batch)


def test_prepare_text_writes_nanogpt_bins_and_refuses_to_overwrite(tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("to be or not to be, that is the question\n" * 20)
    meta = prepare_text(tmp_path / "bins", files=[src], tokenizer="char", val_fraction=0.1)
    train, _val, meta_read = load_bins(tmp_path / "bins")
    assert train.dtype == np.uint16 and len(train) == meta["train_tokens"] == int(len(src.read_text()) * 0.9)
    assert CharTokenizer(meta_read["chars"]).decode(train[:5]) == "to be"
    with pytest.raises(ValueError, match="already exist"):
        prepare_text(tmp_path / "bins", files=[src], tokenizer="char")
    data = TextDataModule(data_dir=tmp_path / "bins", seq_len=8, samples_per_epoch=4, batch_size=2)
    data.setup()
    assert next(iter(data.val_dataloader())).shape[1] == 9


def test_prepare_text_command_offline_bpe_says_how_to_prefetch(tmp_path, monkeypatch, capsys):
    from derf_zoo.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    for name in [m for m in sys.modules if m.startswith("huggingface_hub.constants")]:
        monkeypatch.delitem(sys.modules, name)
    src = tmp_path / "a.txt"
    src.write_text("hello world " * 50)
    code = main(["prepare-text", str(tmp_path / "out"), "--files", str(src), "--tokenizer", "gpt2"])
    err = capsys.readouterr().err
    if code == 0:  # the BPE files happened to be cached on this machine
        pytest.skip("GPT-2's BPE files are cached here, so the offline error cannot be shown")
    assert code == 1 and "Pre-fetch them" in err and "hf download openai-community/gpt2" in err


def test_bad_text_datamodule_arguments():
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        TextDataModule()
    with pytest.raises(ValueError, match="seq_len=100 is longer than the model's context max_len=64"):
        TextDataModule(embedded="shakespeare", seq_len=100, max_len=64)
    with pytest.raises(FileNotFoundError, match="prepare-text"):
        load_bins("/nonexistent/folder")
